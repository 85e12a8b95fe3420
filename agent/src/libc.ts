/**
 * libc.so.6 through bun:ffi, opened once on first use, for the few system calls the agent makes
 * itself rather than through a program: ioctl(2) on the TEE guest devices (attest/ioctl.ts) and
 * clock_settime(2) (clock/settime.ts). Bun links libc itself, so it is always there.
 */
import { dlopen, FFIType, read } from "bun:ffi";
import { constants } from "node:os";

const SYMBOLS = {
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  clock_settime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
} as const;

let lib: ReturnType<typeof dlopen<typeof SYMBOLS>> | undefined;

/** The libc symbols above; throws when libc cannot be loaded. */
export function libc(): ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"] {
  lib ??= dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

/** errno of the last failing call: read right after it, on the same thread, before anything else runs. */
export function lastErrno(): number {
  const at = libc().__errno_location();
  return at ? read.i32(at, 0) : -1;
}

export const ERRNO = constants.errno;

const errnoNames = new Map<number, string>(Object.entries(ERRNO).map(([k, v]) => [v, k]));

/** "EIO (5)" for messages. */
export function errnoName(errno: number): string {
  return `${errnoNames.get(errno) ?? "errno"} (${errno})`;
}
