/**
 * exec: runs a program without a shell and uses its stdout, byte for byte, as the key. The
 * arguments are never logged or shown: upstream's own example passes the key as an argument.
 * Time, output size and leftover processes are bounded by spawnBounded() (subprocess.ts).
 */
import type { ExecConfig } from "../config/providers/exec.ts";
import { KeyProviderError } from "../errors.ts";
import { type SpawnOutcome, spawnBounded, stderrDetail } from "../subprocess.ts";
import { MAX_KEY_BYTES } from "./key-size.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

export function create(config: ExecConfig, ctx: ProviderContext): KeyProvider {
  const what = `command '${config.command}' (volume ${ctx.volume})`;
  const fail = (message: string, cause?: unknown) =>
    new KeyProviderError("exec", `${what} ${message}`, {
      cause,
      hint: "run the command by hand to see what it prints; its stdout must be the key and nothing else",
    });

  return {
    name: "exec",
    temporary: false,
    describe: () => `exec ${config.command}`,
    async getKey() {
      let outcome: SpawnOutcome;
      try {
        outcome = await spawnBounded(
          config.command,
          config.args,
          { timeoutMs: config.timeoutMs, maxStdout: MAX_KEY_BYTES },
          `exec key provider: ${what}`,
        );
      } catch (cause) {
        throw fail(`could not be started: ${(cause as Error).message}`);
      }
      const { stdout, code, signal } = outcome;
      const detail = stderrDetail(outcome.stderr, 5);
      // A rejected output may still be (part of) a key: zero it before failing.
      const reject = (message: string) => {
        stdout.fill(0);
        return fail(message);
      };
      if (outcome.timedOut)
        throw reject(`did not finish within ${config.timeoutMs / 1000} s and was killed${detail}`);
      if (outcome.overflowed) throw reject(`printed more than ${MAX_KEY_BYTES} bytes; that is not a key`);
      if (outcome.leftovers.length > 0) {
        // Whatever still held stdout could have written more: the end of the key was never seen.
        throw reject(
          `left process(es) ${outcome.leftovers.join(", ")} holding its stdout after it exited (killed); ` +
            "a key program must not leave processes behind with its output open",
        );
      }
      if (code !== 0)
        throw reject(`${code === null ? `was killed by ${signal}` : `exited with code ${code}`}${detail}`);
      if (stdout.length === 0)
        throw reject(`printed nothing on stdout; an empty key is not allowed${detail}`);
      return stdout;
    },
  };
}
