/**
 * ioctl(2) on a TEE guest device through bun:ffi and libc. The call and the address-of operation
 * are one explicit interface (`Ioctl`) so the request marshalling in sev-guest.ts / tdx-guest.ts
 * runs unchanged against a fake kernel in tests; `libcIoctl()` is the real one.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { constants } from "node:os";
import { FdeError } from "../errors.ts";

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

let libc: Ioctl | undefined;

/** The real ioctl through libc.so.6 (loaded once; Bun itself links it, so it is always there). */
export function libcIoctl(): Ioctl {
  if (libc) return libc;
  let symbols: {
    ioctl: (fd: number, request: number, arg: unknown) => number;
    __errno_location: () => unknown;
  };
  try {
    symbols = dlopen("libc.so.6", {
      ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
      __errno_location: { args: [], returns: FFIType.ptr },
    }).symbols as typeof symbols;
  } catch (cause) {
    throw new FdeError("cannot load libc.so.6 for the TEE guest device ioctl", { cause });
  }
  libc = {
    call(fd, request, arg) {
      const rc = symbols.ioctl(fd, request, ptr(arg));
      // errno is read right after the call on the same thread, before anything else runs.
      return rc === -1 ? read.i32(symbols.__errno_location() as number, 0) : 0;
    },
    address: (buf) => BigInt(ptr(buf)),
  };
  return libc;
}

/** A zeroed buffer with its own ArrayBuffer, safe to hand to the kernel by address. */
export function kernelBuffer(size: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(size));
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

/** "EIO (5)" for messages. */
export function errnoName(errno: number): string {
  return `${errnoNames.get(errno) ?? "errno"} (${errno})`;
}

export const ERRNO = constants.errno;
