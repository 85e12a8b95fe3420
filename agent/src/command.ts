/**
 * Runs external programs without a shell: the one way the agent starts a program (tools, key
 * programs, token commands), under spawnBounded()'s bounds (subprocess.ts: own process group
 * killed at the timeout, capped stdout, stderr tail, leftovers killed). Secrets go in through
 * `stdin`, never through argv or the environment, so they do not show up in /proc/<pid>/cmdline
 * or in logs; a program whose argv may hold one (a user's key program) runs `quiet`.
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
  /**
   * Name the program by `label` (default its path) in log lines and errors, never by its
   * arguments: a user's key or token command may take a secret as an argument.
   */
  quiet?: boolean;
  /** How log lines and errors name the program (default `cmd` plus its first argument, or `cmd` when quiet). */
  label?: string;
  /** Largest stdout accepted (default RUN_OUTPUT_MAX); more kills the group and fails the run. */
  maxStdout?: number;
  /**
   * Fail when processes the program left behind still held its stdout after it exited (they are
   * killed either way): what was read may be incomplete. For output that is a key or a token.
   */
  requireCompleteOutput?: boolean;
}

export interface RunResult {
  code: number;
  stdout: Uint8Array;
  /** The last STDERR_TAIL_MAX bytes of stderr. */
  stderr: string;
}

/**
 * Run a program and return its output; throws CommandError (its `failure` says which) when it
 * cannot be started, on an exit code not in okCodes, a timeout, stdout over the cap, or (with
 * requireCompleteOutput) leftovers holding stdout. Stdout of a failed run is zeroed: it may be
 * (part of) a key.
 */
export async function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const what = options.label ?? (options.quiet ? cmd : `${cmd} ${args[0] ?? ""}`.trim());
  log.debug(`running: ${options.quiet ? what : `${cmd} ${args.join(" ")}`}`);
  const started = performance.now();
  const maxStdout = options.maxStdout ?? RUN_OUTPUT_MAX;
  let outcome: SpawnOutcome;
  try {
    outcome = await spawnBounded(
      cmd,
      args,
      { stdin: options.stdin, timeoutMs: options.timeoutMs, maxStdout, env: options.env, cwd: options.cwd },
      options.label ?? cmd,
    );
  } catch (cause) {
    throw new CommandError(options.label ?? cmd, null, "", {
      failure: "start",
      reason: (cause as Error).message,
      hint: options.hint ?? `is ${cmd} installed and in PATH?`,
    });
  }
  const { code, signal, stdout, stderr } = outcome;
  // With verbose on, the boot log gives each tool's own time next to the step's (agent overhead).
  log.debug(`finished: ${what} (exit ${code ?? signal}) in ${(performance.now() - started).toFixed(0)} ms`);
  const fail = (failure: CommandError["failure"], reason?: string) => {
    stdout.fill(0);
    // The reason goes last: CommandError shows the last lines of stderr and reason.
    return new CommandError(what, failure === "exit" ? code : null, stderr, {
      failure,
      reason,
      signal,
      leftovers: outcome.leftovers,
      hint: options.hint,
    });
  };
  if (outcome.timedOut) throw fail("timeout", `timed out after ${options.timeoutMs} ms`);
  if (outcome.overflowed) throw fail("overflow", `printed more than ${maxStdout} bytes on stdout`);
  if (options.requireCompleteOutput && outcome.leftovers.length > 0) {
    throw fail("leftovers", `left process(es) ${outcome.leftovers.join(", ")} holding its stdout (killed)`);
  }
  if (code === null || !(options.okCodes ?? [0]).includes(code)) throw fail("exit");
  return { code, stdout, stderr };
}

/** Like run(), returning stdout as trimmed text. */
export async function runText(cmd: string, args: string[], options: RunOptions = {}): Promise<string> {
  const { stdout } = await run(cmd, args, options);
  return new TextDecoder().decode(stdout).trim();
}
