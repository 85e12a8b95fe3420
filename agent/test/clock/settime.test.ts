/**
 * The clock_settime binding: called with a negative time, which the kernel refuses (EINVAL)
 * before it checks permissions or touches the clock, so the host clock is never set. Proves the
 * symbol, the timespec layout and the errno read work; a non-zero return must become an Error.
 */
import { expect, test } from "bun:test";
import { setSystemClock } from "../../src/clock/settime.ts";

test("a time the kernel refuses gives an Error naming errno", () => {
  const before = Date.now();
  expect(() => setSystemClock(-1000)).toThrow(/clock_settime failed \(errno (22|1)\b/);
  expect(Math.abs(Date.now() - before)).toBeLessThan(5000);
});
