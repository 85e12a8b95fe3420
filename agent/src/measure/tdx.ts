/**
 * Extending TDX RTMR3. Two kernel interfaces:
 * - sysfs (mainline Linux 6.16+, tdx_guest with TSM measurement registers): writing the 48-byte
 *   digest to measurements/rtmr3:sha384 extends RTMR3 with it.
 * - TDX_CMD_EXTEND_RTMR on /dev/tdx_guest, from Intel's pre-merge guest driver that distribution
 *   kernels carried (and DCAP's libtdx_attest calls): `_IOR('T', 3, struct tdx_extend_rtmr_req)`
 *   with `{ __u8 data[48]; __u8 index; }`. Mainline never had it; there it fails with ENOTTY.
 */
import { closeSync, constants, existsSync, openSync, writeSync } from "node:fs";
import { type Ioctl, ior, kernelBuffer, libcIoctl } from "../attest/ioctl.ts";
import { TEE_DRIVERS } from "../attest/platform.ts";
import { FdeError } from "../errors.ts";
import { errnoName } from "../libc.ts";
import type { RegisterExtender } from "./open.ts";
import { TDX_REGISTER, TDX_RTMR } from "./registers.ts";

/** The kernel's TDX measurement-register directory (under HostPaths.sysRoot). */
export const TDX_MEASUREMENTS_DIR = "/sys/devices/virtual/misc/tdx_guest/measurements";
export const TDX_RTMR_FILE = `rtmr${TDX_RTMR}:sha384`;

/** struct tdx_extend_rtmr_req of the pre-merge driver: data[48], index (u8). */
export const TDX_EXTEND_REQ = { size: 49, data: 0, index: 48, dataLen: 48 } as const;
export const TDX_CMD_EXTEND_RTMR = ior("T", 3, TDX_EXTEND_REQ.size);

export interface TdxExtendOptions {
  ioctl?: Ioctl;
}

export function openTdxRegister(
  sysRoot: string,
  options: TdxExtendOptions = {},
): RegisterExtender | { unavailable: string } {
  const file = `${sysRoot}${TDX_MEASUREMENTS_DIR}/${TDX_RTMR_FILE}`;
  const device = `${sysRoot}${TEE_DRIVERS.tdx.device}`;
  if (existsSync(file)) {
    return { spec: TDX_REGISTER, via: `sysfs ${file}`, extend: async (digest) => extendSysfs(file, digest) };
  }
  if (existsSync(device)) {
    return {
      spec: TDX_REGISTER,
      via: `TDX_CMD_EXTEND_RTMR on ${device}`,
      extend: async (digest) => extendIoctl(device, digest, options.ioctl ?? libcIoctl()),
    };
  }
  return {
    unavailable: `this TDX guest has no runtime measurement interface: neither ${file} (Linux 6.16+) nor ${device}; load the ${TEE_DRIVERS.tdx.module} module`,
  };
}

function checkDigest(digest: Uint8Array): void {
  if (digest.length !== TDX_EXTEND_REQ.dataLen)
    throw new FdeError(`TDX: an RTMR extend takes ${TDX_EXTEND_REQ.dataLen} bytes, got ${digest.length}`);
}

export function extendSysfs(file: string, digest: Uint8Array): void {
  checkDigest(digest);
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_NOFOLLOW);
  } catch (cause) {
    throw new FdeError(`TDX: cannot open ${file} to extend RTMR${TDX_RTMR}: ${(cause as Error).message}`, {
      cause,
    });
  }
  try {
    // One write of the whole digest: the kernel extends once per write and rejects short ones.
    const n = writeSync(fd, digest, 0, digest.length, 0);
    if (n !== digest.length)
      throw new FdeError(`TDX: short write (${n} of ${digest.length} bytes) to ${file}`);
  } catch (cause) {
    if (cause instanceof FdeError) throw cause;
    throw new FdeError(`TDX: extending RTMR${TDX_RTMR} through ${file} failed: ${(cause as Error).message}`, {
      cause,
    });
  } finally {
    closeSync(fd);
  }
}

export function extendIoctl(device: string, digest: Uint8Array, ioctl: Ioctl): void {
  checkDigest(digest);
  let fd: number;
  try {
    fd = openSync(device, "r+");
  } catch (cause) {
    throw new FdeError(`TDX: cannot open ${device} to extend RTMR${TDX_RTMR}: ${(cause as Error).message}`, {
      cause,
    });
  }
  try {
    const req = kernelBuffer(TDX_EXTEND_REQ.size);
    req.set(digest, TDX_EXTEND_REQ.data);
    req[TDX_EXTEND_REQ.index] = TDX_RTMR;
    const errno = ioctl.call(fd, TDX_CMD_EXTEND_RTMR, req);
    if (errno !== 0) {
      throw new FdeError(`TDX: TDX_CMD_EXTEND_RTMR on ${device} failed: ${errnoName(errno)}`, {
        hint: "mainline kernels extend RTMRs only through sysfs (Linux 6.16+); this kernel has neither",
      });
    }
  } finally {
    closeSync(fd);
  }
}
