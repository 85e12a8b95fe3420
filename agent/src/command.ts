/**
 * Runs external programs without a shell. Secrets go in through `stdin`, never through argv or
 * the environment, so they do not show up in /proc/<pid>/cmdline or in logs.
 */
import { CommandError } from "./errors.ts";
import { log } from "./log.ts";

export interface RunOptions {
  /** Bytes written to the child's stdin (then closed). Use this for keys. */
  stdin?: Uint8Array | string;
  /** Kill the child after this many milliseconds. */
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Exit codes that count as success (default [0]). */
  okCodes?: number[];
  hint?: string;
}

export interface RunResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

/** Run a program and return its output; throws CommandError on an exit code not in okCodes. */
export async function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  log.debug(`running: ${cmd} ${args.join(" ")}`);
  const started = performance.now();
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn([cmd, ...args], {
      stdin: options.stdin === undefined ? "ignore" : "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: options.env ? { ...process.env, ...options.env } : undefined,
      cwd: options.cwd,
    });
  } catch (cause) {
    throw new CommandError(cmd, null, `cannot start ${cmd}: ${(cause as Error).message}`, {
      hint: options.hint ?? `is ${cmd} installed and in PATH?`,
    });
  }
  let timedOut = false;
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          proc.kill("SIGKILL");
        }, options.timeoutMs);
  if (options.stdin !== undefined && proc.stdin && typeof proc.stdin !== "number") {
    proc.stdin.write(options.stdin);
    await proc.stdin.end();
  }
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout as ReadableStream).bytes(),
    new Response(proc.stderr as ReadableStream).text(),
    proc.exited,
  ]);
  if (timer) clearTimeout(timer);
  // With verbose on, the boot log gives each tool's own time next to the step's (agent overhead).
  log.debug(
    `finished: ${cmd} ${args[0] ?? ""} (exit ${code}) in ${(performance.now() - started).toFixed(0)} ms`,
  );
  if (timedOut) {
    throw new CommandError(cmd, null, `timed out after ${options.timeoutMs} ms\n${stderr}`, {
      hint: options.hint,
    });
  }
  if (!(options.okCodes ?? [0]).includes(code)) {
    throw new CommandError(`${cmd} ${args[0] ?? ""}`.trim(), code, stderr, { hint: options.hint });
  }
  return { code, stdout, stderr };
}

/** Like run(), returning stdout as trimmed text. */
export async function runText(cmd: string, args: string[], options: RunOptions = {}): Promise<string> {
  const { stdout } = await run(cmd, args, options);
  return new TextDecoder().decode(stdout).trim();
}
