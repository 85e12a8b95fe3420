/**
 * Runs external programs without a shell. Secrets go in through `stdin`, never through argv or
 * the environment, so they do not show up in /proc/<pid>/cmdline or in logs.
 */
import { CommandError } from "./errors.ts";
import { log } from "./log.ts";
import { RUN_OUTPUT_MAX, type SpawnOutcome, spawnBounded } from "./subprocess.ts";

export interface RunOptions {
  /** Bytes written to the child's stdin (then closed). Use this for keys. */
  stdin?: Uint8Array | string;
  /** Kill the child's process group after this many milliseconds (SIGTERM, then SIGKILL). */
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
  /** The last STDERR_TAIL_MAX bytes of stderr. */
  stderr: string;
}

/**
 * Run a program and return its output; throws CommandError on an exit code not in okCodes, a
 * timeout, or stdout over RUN_OUTPUT_MAX. The bounds are spawnBounded()'s (subprocess.ts).
 */
export async function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  log.debug(`running: ${cmd} ${args.join(" ")}`);
  const started = performance.now();
  let outcome: SpawnOutcome;
  try {
    outcome = await spawnBounded(cmd, args, {
      stdin: options.stdin,
      timeoutMs: options.timeoutMs,
      maxStdout: RUN_OUTPUT_MAX,
      env: options.env,
      cwd: options.cwd,
    });
  } catch (cause) {
    throw new CommandError(cmd, null, (cause as Error).message, {
      hint: options.hint ?? `is ${cmd} installed and in PATH?`,
    });
  }
  const { code, stdout, stderr } = outcome;
  // With verbose on, the boot log gives each tool's own time next to the step's (agent overhead).
  log.debug(
    `finished: ${cmd} ${args[0] ?? ""} (exit ${code ?? outcome.signal}) in ${(performance.now() - started).toFixed(0)} ms`,
  );
  const what = `${cmd} ${args[0] ?? ""}`.trim();
  // The reason goes last: CommandError shows the last lines of this text.
  if (outcome.timedOut) {
    throw new CommandError(what, null, `${stderr}\ntimed out after ${options.timeoutMs} ms`, {
      hint: options.hint,
    });
  }
  if (outcome.overflowed) {
    throw new CommandError(what, null, `${stderr}\nprinted more than ${RUN_OUTPUT_MAX} bytes on stdout`, {
      hint: options.hint,
    });
  }
  if (code === null || !(options.okCodes ?? [0]).includes(code)) {
    throw new CommandError(what, code, stderr, { hint: options.hint });
  }
  return { code, stdout, stderr };
}

/** Like run(), returning stdout as trimmed text. */
export async function runText(cmd: string, args: string[], options: RunOptions = {}): Promise<string> {
  const { stdout } = await run(cmd, args, options);
  return new TextDecoder().decode(stdout).trim();
}
