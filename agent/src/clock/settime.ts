/**
 * Sets CLOCK_REALTIME with clock_settime(2) through bun:ffi (no `date -s` subprocess; the initrd
 * may not have one). Needs CAP_SYS_TIME, which the boot stages run with. libc is opened on first
 * use: most boots never set the clock.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";

const CLOCK_REALTIME = 0;

/** Sets the system clock to `unixMs`; throws an Error with errno's number when the kernel refuses. */
export function setSystemClock(unixMs: number): void {
  const libc = dlopen("libc.so.6", {
    clock_settime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  try {
    // struct timespec on x86-64: two 64-bit fields, tv_sec and tv_nsec.
    const ts = new BigInt64Array(2);
    const ms = Math.floor(unixMs);
    ts[0] = BigInt(Math.floor(ms / 1000));
    ts[1] = BigInt((ms % 1000) * 1_000_000);
    if (libc.symbols.clock_settime(CLOCK_REALTIME, ptr(ts)) !== 0) {
      const errnoPtr = libc.symbols.__errno_location();
      const errno = errnoPtr ? read.i32(errnoPtr, 0) : -1;
      throw new Error(
        `clock_settime failed (errno ${errno}${errno === 1 ? ", EPERM: needs CAP_SYS_TIME" : ""})`,
      );
    }
  } finally {
    libc.close();
  }
}
