/** The one cause-chain walk (errors.ts causeLines), as formatError and the step runner print it. */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { causeLines, FdeError, formatError, MAX_CAUSE_DEPTH } from "../../src/errors.ts";
import { failureParagraph } from "../../src/steps.ts";

const failure = (error: unknown) => ({ what: "convert", index: 2, total: 5, title: "writing", error });

describe("cause chain", () => {
  test("formatError and a failed step's paragraph print the same causes, a non-Error cause too", () => {
    const err = new FdeError("outer", { cause: new Error("middle", { cause: "ENOSPC on /dev/vdb" }) });
    const expected = ["Caused by: middle", "Caused by: ENOSPC on /dev/vdb"];
    expect(causeLines(err, err.message)).toEqual(expected);
    expect(formatError(err).split("\n").slice(1)).toEqual(expected);
    expect(failureParagraph(failure(err)).split("\n").slice(1)).toEqual(expected);
  });

  test("a cause already in the message is not repeated", () => {
    const inner = new Error("disk full");
    expect(
      causeLines(new Error("write failed: disk full", { cause: inner }), "write failed: disk full"),
    ).toEqual([]);
  });

  test("a cycle in the cause chain ends within MAX_CAUSE_DEPTH lines", () => {
    // In a child process with a timeout: an unbounded walk would hang, not fail.
    const script = `
      const { failureParagraph } = await import(${JSON.stringify(join(import.meta.dir, "../../src/steps.ts"))});
      const a = new Error("a"); const b = new Error("b", { cause: a }); a.cause = b;
      console.log(failureParagraph({ what: "t", index: 1, total: 1, title: "x", error: a }));`;
    const child = Bun.spawnSync([process.execPath, "-e", script], { timeout: 15_000, stderr: "pipe" });
    expect(child.exitCode).toBe(0);
    const lines = child.stdout.toString().trim().split("\n");
    const causes = lines.filter((l) => l.startsWith("Caused by: "));
    expect(causes[0]).toBe("Caused by: b");
    expect(causes.length).toBeLessThanOrEqual(MAX_CAUSE_DEPTH);
  });
});
