/**
 * Sets CLOCK_REALTIME with clock_settime(2) through bun:ffi (no `date -s` subprocess; the initrd
 * may not have one). Needs CAP_SYS_TIME, which the boot stages run with. libc (libc.ts) is opened
 * on first use: most boots never set the clock.
 */
import { ptr } from "bun:ffi";
import { FdeError } from "../errors.ts";
import { lastErrno, libc } from "../libc.ts";

const CLOCK_REALTIME = 0;

/** Sets the system clock to `unixMs`; throws an Error with errno's number when the kernel refuses. */
export function setSystemClock(unixMs: number): void {
  // struct timespec on the LP64 Linux ABIs this agent builds for (x86-64, aarch64): two 64-bit
  // fields, tv_sec and tv_nsec.
  const ts = new BigInt64Array(2);
  const ms = Math.floor(unixMs);
  ts[0] = BigInt(Math.floor(ms / 1000));
  ts[1] = BigInt((ms % 1000) * 1_000_000);
  if (libc().clock_settime(CLOCK_REALTIME, ptr(ts)) !== 0) {
    const errno = lastErrno();
    throw new FdeError(
      `clock_settime failed (errno ${errno}${errno === 1 ? ", EPERM: needs CAP_SYS_TIME" : ""})`,
    );
  }
}
