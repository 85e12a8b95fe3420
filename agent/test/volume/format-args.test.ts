/** The cryptsetup luksFormat argv a volume gets (integrity, otp's fast PBKDF, the init marker). */
import { expect, test } from "bun:test";
import type { VolumeConfig } from "../../src/config/volume.ts";
import { formatArgs, SUBSYSTEM_INITIALIZING } from "../../src/disk/luks.ts";
import { formatOptions } from "../../src/volume/ops.ts";

const volume = (over: Partial<VolumeConfig>): VolumeConfig => ({
  file: "/etc/cryptpilot/volumes/v.toml",
  volume: "v",
  dev: "/dev/vdb",
  autoOpen: true,
  openInInitrd: false,
  integrity: false,
  encrypt: { type: "otp" },
  ...over,
});

/** The value following `flag` in argv, or undefined. */
const flagValue = (argv: string[], flag: string) => {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1];
};

test("integrity = true: hmac-sha256 with a 512-bit XTS key, wiped, marker initializing", () => {
  const argv = formatArgs(
    "/dev/vdb",
    formatOptions(volume({ integrity: true }), SUBSYSTEM_INITIALIZING, false),
  );
  expect(flagValue(argv, "--integrity")).toBe("hmac-sha256");
  // cryptsetup adds the HMAC key to the XTS key itself; 768 here makes luksFormat fail.
  expect(flagValue(argv, "--key-size")).toBe("512");
  expect(flagValue(argv, "--cipher")).toBe("aes-xts-plain64");
  expect(flagValue(argv, "--subsystem")).toBe(SUBSYSTEM_INITIALIZING);
  // Unwritten sectors would fail their tag check when makefs or the filesystem reads them.
  expect(argv).not.toContain("--integrity-no-wipe");
  expect(argv.at(-2)).toBe("--key-file=-");
  expect(argv.at(-1)).toBe("/dev/vdb");
});

test("integrity = false: no dm-integrity options", () => {
  const argv = formatArgs("/dev/vdb", formatOptions(volume({}), SUBSYSTEM_INITIALIZING, false));
  expect(argv).not.toContain("--integrity");
  expect(flagValue(argv, "--key-size")).toBe("512");
});

test("otp (random key) with integrity: the fast PBKDF and still integrity", () => {
  const argv = formatArgs(
    "/dev/vdb",
    formatOptions(volume({ integrity: true }), SUBSYSTEM_INITIALIZING, true),
  );
  expect(flagValue(argv, "--integrity")).toBe("hmac-sha256");
  expect(flagValue(argv, "--pbkdf")).toBe("pbkdf2");
});
