/**
 * exec: runs a program without a shell and uses its stdout, byte for byte, as the key. The
 * arguments are never logged or shown: upstream's own example passes the key as an argument.
 * Time, output size and leftover processes are bounded by command.ts's run() (quiet).
 */
import { run } from "../command.ts";
import type { ExecConfig } from "../config/providers/exec.ts";
import { CommandError, KeyProviderError } from "../errors.ts";
import { stderrDetail } from "../subprocess.ts";
import { MAX_KEY_BYTES } from "./key-size.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

export function create(config: ExecConfig, ctx: ProviderContext): KeyProvider {
  const what = `command '${config.command}' (volume ${ctx.volume})`;
  const fail = (message: string, cause?: unknown) =>
    new KeyProviderError("exec", `${what} ${message}`, {
      cause,
      hint: "run the command by hand to see what it prints; its stdout must be the key and nothing else",
    });

  /** What went wrong, in the words of this provider. */
  function problem(e: CommandError): string {
    const detail = stderrDetail(e.stderr, 5);
    switch (e.failure) {
      case "start":
        return `could not be started: ${e.reason}`;
      case "timeout":
        return `did not finish within ${config.timeoutMs / 1000} s and was killed${detail}`;
      case "overflow":
        return `printed more than ${MAX_KEY_BYTES} bytes; that is not a key`;
      case "leftovers":
        // Whatever still held stdout could have written more: the end of the key was never seen.
        return (
          `left process(es) ${e.leftovers.join(", ")} holding its stdout after it exited (killed); ` +
          "a key program must not leave processes behind with its output open"
        );
      case "exit":
        return `${e.code === null ? `was killed by ${e.signal}` : `exited with code ${e.code}`}${detail}`;
    }
  }

  return {
    name: "exec",
    temporary: false,
    describe: () => `exec ${config.command}`,
    async getKey() {
      let result: { stdout: Uint8Array; stderr: string };
      try {
        // run() zeroes the output of a failed run: it may be (part of) a key.
        result = await run(config.command, config.args, {
          quiet: true,
          label: `exec key provider: ${what}`,
          timeoutMs: config.timeoutMs,
          maxStdout: MAX_KEY_BYTES,
          requireCompleteOutput: true,
        });
      } catch (e) {
        if (e instanceof CommandError) throw fail(problem(e));
        throw e;
      }
      if (result.stdout.length === 0)
        throw fail(`printed nothing on stdout; an empty key is not allowed${stderrDetail(result.stderr, 5)}`);
      return result.stdout;
    },
  };
}
