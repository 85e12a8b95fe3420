/**
 * exec: runs a program without a shell and uses its stdout, byte for byte, as the key. The
 * arguments are never logged or shown: upstream's own example passes the key as an argument.
 */
import type { ExecConfig } from "../config/providers.ts";
import { KeyProviderError } from "../errors.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

/** Enough for any key; stops a runaway program from filling memory in the initrd. */
const MAX_OUTPUT = 1 << 20;

async function readLimited(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

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
      let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
      try {
        // A process group of its own, so that a timeout also kills what the command started:
        // a shell's children would otherwise keep stdout open and the read waiting.
        proc = Bun.spawn([config.command, ...config.args], {
          stdin: "ignore",
          stdout: "pipe",
          stderr: "pipe",
          detached: true,
        });
      } catch (cause) {
        throw fail(`could not be started: ${(cause as Error).message}`);
      }
      const killGroup = () => {
        try {
          process.kill(-proc.pid, "SIGKILL");
        } catch {
          proc.kill("SIGKILL");
        }
      };
      let timedOut = false;
      let graceTimer: Timer | undefined;
      let abandon: (value: undefined) => void = () => {};
      const abandoned = new Promise<undefined>((resolve) => {
        abandon = resolve;
      });
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup();
        // Something that left the group (a new session) may still hold stdout: stop waiting.
        graceTimer = setTimeout(() => abandon(undefined), 1000);
      }, config.timeoutMs);
      try {
        const finished = await Promise.race([
          Promise.all([
            readLimited(proc.stdout, MAX_OUTPUT).then((out) => {
              if (out === undefined) killGroup();
              return out;
            }),
            new Response(proc.stderr).text(),
            proc.exited,
          ]),
          abandoned,
        ]);
        const [stdout, stderr, code] = finished ?? [undefined, "", null];
        const detail = stderr.trim() ? `: ${stderr.trim().split("\n").slice(-5).join(" / ")}` : "";
        if (timedOut)
          throw fail(`did not finish within ${config.timeoutMs / 1000} s and was killed${detail}`);
        if (stdout === undefined) throw fail(`printed more than ${MAX_OUTPUT} bytes; that is not a key`);
        if (code !== 0) throw fail(`exited with code ${code}${detail}`);
        if (stdout.length === 0)
          throw fail(`printed nothing on stdout; an empty key is not allowed${detail}`);
        return stdout;
      } finally {
        clearTimeout(timer);
        clearTimeout(graceTimer);
      }
    },
  };
}
