/**
 * The architecture checks against crafted input: the ELF-header reader (arch.ts readElfArch) on
 * short, foreign, 32-bit, big-endian and unknown-machine headers, on a FIFO, a device, a directory,
 * a symbolic link and a huge sparse file (only 64 bytes are read); the guest-root symlink resolver
 * (convert/guest-arch.ts) on links that point at the host, climb out with "..", or loop; and the
 * binfmt_misc check on entries that are missing, disabled, lack the F flag or are oversized. Each
 * case ends with one clear FdeError (or the right answer) within generous time and memory bounds.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AMD64, ARM64, elfArch, readElfArch } from "../../src/arch.ts";
import {
  emulationProblem,
  guestArch,
  MAX_SYMLINK_HOPS,
  resolveInRoot,
} from "../../src/convert/guest-arch.ts";
import { FdeError } from "../../src/errors.ts";
import { sh, tempDir } from "../../testkit/sh.ts";
import { elfHeader } from "../convert/fixture.ts";
import { bounded } from "./limits.ts";

const work = tempDir("hostile-arch");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const t = (name: string) => join(work, name);
const LIMITS = { ms: 3_000, mib: 200 };

/** The FdeError fn throws (a plain Error or no error fails the test). */
async function refusal(fn: () => unknown): Promise<FdeError> {
  const err = await bounded(async () => {
    try {
      fn();
    } catch (e) {
      return e;
    }
    return undefined;
  }, LIMITS);
  expect(err).toBeInstanceOf(FdeError);
  expect((err as Error).message.split("\n")).toHaveLength(1);
  return err as FdeError;
}

const header = (patch: (h: Uint8Array) => void) => {
  const h = elfHeader(AMD64);
  patch(h);
  return h;
};

describe("ELF headers", () => {
  test("a real header of each architecture", () => {
    expect(elfArch(elfHeader(AMD64), "x")).toBe(AMD64);
    expect(elfArch(elfHeader(ARM64), "x")).toBe(ARM64);
  });

  const cases: [string, Uint8Array, string][] = [
    ["empty", new Uint8Array(0), "it is 0 bytes long, shorter than an ELF header"],
    ["short", elfHeader(AMD64).subarray(0, 19), "it is 19 bytes long"],
    ["a script", new TextEncoder().encode("#!/bin/sh\necho agent\n"), "it is not an ELF file"],
    ["PE", header((h) => h.set([0x4d, 0x5a, 0x90, 0x00])), "it is not an ELF file"],
    ["32-bit", header((h) => (h[4] = 1)), "its ELF class is 1, not 64-bit (2)"],
    ["big-endian", header((h) => (h[5] = 2)), "its ELF data encoding is 2, not little-endian (1)"],
    ["i386", header((h) => (h[18] = 3)), "its ELF machine is 3, which is none of 62 (x86_64), 183 (aarch64)"],
    ["riscv", header((h) => (h[18] = 243)), "its ELF machine is 243"],
    ["machine 0xffff", header((h) => h.set([0xff, 0xff], 18)), "its ELF machine is 65535"],
  ];
  for (const [name, bytes, why] of cases)
    test(`${name}: refused, naming the file and why`, async () => {
      const file = t(`elf-${name.replace(/\W/g, "_")}`);
      writeFileSync(file, bytes);
      const err = await refusal(() => readElfArch(file, `the agent ${file}`));
      expect(err.message).toContain(`the agent ${file} is not an executable for x86_64 or aarch64: ${why}`);
    });
});

describe("files that are not executables", () => {
  test("a FIFO is refused without waiting for a writer", async () => {
    sh(["mkfifo", t("fifo")]);
    expect((await refusal(() => readElfArch(t("fifo")))).message).toContain("is a FIFO, not an executable");
  });
  test("a device and a directory", async () => {
    expect((await refusal(() => readElfArch("/dev/zero"))).message).toContain(
      "/dev/zero is a character device",
    );
    expect((await refusal(() => readElfArch(work))).message).toContain("is a directory");
  });
  test("a symbolic link is not followed (the caller resolves links inside the guest)", async () => {
    symlinkSync("/bin/true", t("link"));
    expect((await refusal(() => readElfArch(t("link")))).message).toContain("is a symbolic link");
  });
  test("a missing file names itself", async () => {
    expect((await refusal(() => readElfArch(t("nope"), "the guest's /usr/bin/bash"))).message).toBe(
      "cannot read the guest's /usr/bin/bash: ENOENT",
    );
  });
  test("a 64 GiB sparse file: only its header is read", async () => {
    writeFileSync(t("huge"), elfHeader(ARM64));
    truncateSync(t("huge"), 64 * 1024 ** 3);
    expect(await bounded(async () => readElfArch(t("huge")), LIMITS)).toBe(ARM64);
  });
});

describe("symbolic links inside the guest root", () => {
  const root = t("guest");
  mkdirSync(join(root, "usr/bin"), { recursive: true });
  mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
  writeFileSync(join(root, "usr/bin/dash"), elfHeader(ARM64));

  test("an absolute link resolves in the guest, never on the host", async () => {
    // The host has /usr/bin/true (its own architecture); the guest's is arm64.
    writeFileSync(join(root, "usr/bin/true"), elfHeader(ARM64));
    symlinkSync("/usr/bin/true", join(root, "usr/lib/systemd/systemd"));
    expect(resolveInRoot(root, "usr/lib/systemd/systemd")).toBe("usr/bin/true");
    expect(guestArch(root)).toEqual({ arch: ARM64, probe: "usr/lib/systemd/systemd" });
    rmSync(join(root, "usr/lib/systemd/systemd"));
  });

  test("merged /usr: bin -> usr/bin, sh -> dash (relative links)", () => {
    symlinkSync("usr/bin", join(root, "bin"));
    symlinkSync("dash", join(root, "usr/bin/sh"));
    expect(resolveInRoot(root, "bin/sh")).toBe("usr/bin/dash");
    expect(guestArch(root)).toEqual({ arch: ARM64, probe: "bin/sh" });
  });

  test('".." stops at the guest root', () => {
    symlinkSync("../../../../../../../usr/bin/dash", join(root, "usr/bin/climb"));
    expect(resolveInRoot(root, "usr/bin/climb")).toBe("usr/bin/dash");
    symlinkSync("../../../../../../../etc/passwd", join(root, "usr/bin/escape"));
    expect(resolveInRoot(root, "usr/bin/escape")).toBeUndefined(); // the host's /etc/passwd is not the guest's
  });

  test("a loop ends after MAX_SYMLINK_HOPS links with one named error", async () => {
    symlinkSync("loop-b", join(root, "usr/bin/loop-a"));
    symlinkSync("/usr/bin/loop-a", join(root, "usr/bin/loop-b"));
    const err = await refusal(() => resolveInRoot(root, "usr/bin/loop-a"));
    expect(err.message).toBe(
      `/usr/bin/loop-a in the guest image: more than ${MAX_SYMLINK_HOPS} symbolic links to follow (a loop?)`,
    );
  });

  test("a root with none of the probes is refused, naming them", async () => {
    const empty = t("empty-guest");
    mkdirSync(empty);
    const err = await refusal(() => guestArch(empty));
    expect(err.message).toBe(
      "cannot tell the guest image's architecture: it has none of /usr/lib/systemd/systemd, /usr/bin/bash, /bin/sh",
    );
  });
});

describe("binfmt_misc", () => {
  const dir = (name: string, entry?: string | Uint8Array, status = "enabled\n") => {
    const d = t(`binfmt-${name}`);
    mkdirSync(d);
    writeFileSync(join(d, "status"), status);
    if (entry !== undefined) writeFileSync(join(d, "qemu-aarch64"), entry);
    return d;
  };
  const OK = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\n";

  test("qemu-user-static's entry (enabled, F) is usable", () => {
    expect(emulationProblem(ARM64, dir("ok", OK))).toBeUndefined();
  });
  test("missing, disabled, without F, binfmt_misc disabled: each says why", () => {
    expect(emulationProblem(ARM64, dir("none"))).toContain("qemu-aarch64 does not exist");
    expect(emulationProblem(ARM64, dir("off", OK.replace("enabled", "disabled")))).toContain("is disabled");
    expect(emulationProblem(ARM64, dir("nof", OK.replace("POF", "PO")))).toContain("lacks the F flag");
    expect(emulationProblem(ARM64, dir("status", OK, "disabled\n"))).toContain("binfmt_misc is disabled");
  });
  test("an oversized entry is read only in part", async () => {
    const big = dir("big", `${OK}${"x".repeat(50 * 1024 * 1024)}`);
    expect(await bounded(async () => emulationProblem(ARM64, big), LIMITS)).toBeUndefined();
  });
});
