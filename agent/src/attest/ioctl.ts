/**
 * ioctl(2) on a TEE guest device through bun:ffi and libc. The call and the address-of operation
 * are one explicit interface (`Ioctl`) so the request marshalling in sev-guest.ts / tdx-guest.ts
 * runs unchanged against a fake kernel in tests; `libcIoctl()` is the real one.
 */
import { ptr } from "bun:ffi";
import { FdeError } from "../errors.ts";
import { lastErrno, libc } from "../libc.ts";

/** Linux asm-generic ioctl encoding: dir(2) | size(14) | type(8) | nr(8). */
const IOC_WRITE = 1;
const IOC_READ = 2;

/** `_IOWR(type, nr, size)` as the kernel's <asm-generic/ioctl.h> builds it. */
export function iowr(type: string, nr: number, size: number): number {
  return (((IOC_READ | IOC_WRITE) << 30) | (size << 16) | (type.charCodeAt(0) << 8) | nr) >>> 0;
}

/** `_IOR(type, nr, size)`. */
export function ior(type: string, nr: number, size: number): number {
  return ((IOC_READ << 30) | (size << 16) | (type.charCodeAt(0) << 8) | nr) >>> 0;
}

export interface Ioctl {
  /** ioctl(fd, request, arg) with arg passed as a pointer; returns 0 or the errno. */
  call(fd: number, request: number, arg: Uint8Array): number;
  /**
   * The user-space address of `buf` for pointer fields inside a request struct. Valid while the
   * caller holds `buf`; buffers passed here must be backed by their own ArrayBuffer.
   */
  address(buf: Uint8Array): bigint;
}

let real: Ioctl | undefined;

/** The real ioctl through libc (libc.ts). */
export function libcIoctl(): Ioctl {
  if (real) return real;
  let symbols: ReturnType<typeof libc>;
  try {
    symbols = libc();
  } catch (cause) {
    throw new FdeError("cannot load libc.so.6 for the TEE guest device ioctl", { cause });
  }
  real = {
    call(fd, request, arg) {
      const rc = symbols.ioctl(fd, request, ptr(arg));
      return rc === -1 ? lastErrno() : 0;
    },
    address: (buf) => BigInt(ptr(buf)),
  };
  return real;
}

/** A zeroed buffer with its own ArrayBuffer, safe to hand to the kernel by address. */
export function kernelBuffer(size: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(size));
}
