/** The pure rules: status, init decision (three-state marker, refusal), otp and persistent open, parsers. */
import { describe, expect, test } from "bun:test";
import { signatureFromExport } from "../../src/disk/blkid.ts";
import { SUBSYSTEM_INITIALIZING, SUBSYSTEM_READY } from "../../src/disk/luks.ts";
import { mkfsCommand, parseMountinfo, parseSwaps } from "../../src/volume/fs.ts";
import {
  type DeviceFacts,
  decideInit,
  otpOpenRefusal,
  persistentOpenRefusal,
  volumeStatus,
} from "../../src/volume/state.ts";

const DEV = "/dev/vdb";
const blank: DeviceFacts = { opened: false, devExists: true };
const ready: DeviceFacts = { ...blank, subsystem: SUBSYSTEM_READY, signature: "crypto_LUKS" };
const initializing: DeviceFacts = { ...blank, subsystem: SUBSYSTEM_INITIALIZING, signature: "crypto_LUKS" };
const ext4: DeviceFacts = { ...blank, signature: "ext4" };
const foreignLuks: DeviceFacts = { ...blank, subsystem: "", signature: "crypto_LUKS" };

describe("volumeStatus", () => {
  test("persistent volumes follow the marker", () => {
    expect(volumeStatus(blank, DEV, false).status).toBe("RequiresInit");
    expect(volumeStatus(initializing, DEV, false).status).toBe("Initializing");
    expect(volumeStatus(ready, DEV, false).status).toBe("ReadyToOpen");
    expect(volumeStatus(ext4, DEV, false)).toMatchObject({ status: "RequiresInit" });
    expect(volumeStatus(ext4, DEV, false).description).toContain("--force-reinit");
    expect(volumeStatus(foreignLuks, DEV, false).status).toBe("RequiresInit");
  });

  test("open, missing and unreadable devices come first", () => {
    expect(volumeStatus({ ...ready, opened: true }, DEV, false).status).toBe("Opened");
    expect(volumeStatus({ opened: false, devExists: false }, DEV, true).status).toBe("DeviceNotFound");
    expect(volumeStatus({ ...blank, error: "EACCES" }, DEV, false).status).toBe("CheckFailed");
  });

  test("otp volumes are ready on a blank or cryptpilot device, not on foreign data", () => {
    expect(volumeStatus(blank, DEV, true).status).toBe("ReadyToOpen");
    expect(volumeStatus(ready, DEV, true).status).toBe("ReadyToOpen");
    expect(volumeStatus(ext4, DEV, true).status).toBe("RequiresInit");
  });
});

describe("decideInit", () => {
  test("blank: format; interrupted: format again, no --force-reinit needed", () => {
    expect(decideInit(blank, DEV, false).format).toBe(true);
    expect(decideInit(initializing, DEV, false)).toMatchObject({ format: true });
  });

  test("initialised or holding any signature: refused unless forced", () => {
    for (const facts of [ready, ext4, foreignLuks, { ...blank, signature: "gpt partition table" }]) {
      const refused = decideInit(facts, DEV, false);
      expect(refused.format).toBe(false);
      expect(decideInit(facts, DEV, true).format).toBe(true);
    }
    expect(decideInit(ext4, DEV, false)).toMatchObject({
      refusal: "/dev/vdb holds data: blkid finds ext4 on it",
    });
  });
});

describe("open rules", () => {
  test("otp refuses foreign data only", () => {
    expect(otpOpenRefusal(blank, DEV)).toBeUndefined();
    expect(otpOpenRefusal(ready, DEV)).toBeUndefined();
    expect(otpOpenRefusal(initializing, DEV)).toBeUndefined();
    expect(otpOpenRefusal(ext4, DEV)).toContain("volume init --force-reinit");
    expect(otpOpenRefusal(foreignLuks, DEV)).toContain("crypto_LUKS");
  });

  test("persistent volumes open only when initialised, and are never formatted by open", () => {
    expect(persistentOpenRefusal(ready, DEV)).toBeUndefined();
    expect(persistentOpenRefusal(initializing, DEV)).toContain("interrupted");
    expect(persistentOpenRefusal(blank, DEV)).toContain("run 'volume init' first");
    expect(persistentOpenRefusal(ext4, DEV)).toContain("blkid finds ext4");
  });
});

describe("parsers", () => {
  test("blkid -p -o export: TYPE, else a partition table; atari is a false positive", () => {
    expect(signatureFromExport("DEVNAME=/dev/vdb\nUUID=x\nVERSION=1.0\nTYPE=ext4\nUSAGE=filesystem\n")).toBe(
      "ext4",
    );
    expect(signatureFromExport("DEVNAME=/dev/vdb\nPTUUID=x\nPTTYPE=gpt\n")).toBe("gpt partition table");
    expect(signatureFromExport("DEVNAME=/dev/vdb\nPTTYPE=atari\n")).toBeUndefined();
    expect(signatureFromExport("")).toBeUndefined();
  });

  test("mountinfo mount points (octal escapes) and /proc/swaps devices", () => {
    const mountinfo =
      "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/rootfs rw\n" +
      "40 22 253:3 / /mnt/my\\040data rw shared:20 - ext4 /dev/mapper/data0 rw\n";
    expect(parseMountinfo(mountinfo)).toEqual(["/", "/mnt/my data"]);
    const swaps = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/dm-3 partition\t65532\t\t0\t\t-2\n";
    expect(parseSwaps(swaps)).toEqual(["/dev/dm-3"]);
  });

  test("makefs commands force the format", () => {
    expect(mkfsCommand("swap", "/dev/mapper/s")).toEqual(["mkswap", ["-f", "/dev/mapper/s"]]);
    expect(mkfsCommand("xfs", "/d")[1]).toContain("-f");
    expect(mkfsCommand("ext4", "/d")[1]).toContain("-F");
    expect(mkfsCommand("vfat", "/d")[1]).toContain("-I");
  });
});
