/**
 * Every failure the agent reports to a user is an FdeError: one readable paragraph, the exit code
 * it maps to, and the underlying cause kept for `--verbose` (like ofetch's FetchError).
 * agent/test/code/errors.test.ts fails on a plain `throw new Error(` outside a few parser files.
 */

/*
 * The exit statuses the README documents; there is no third one. A feature this build lacks is
 * refused as a configuration error naming the field that asks for it (EXIT_USAGE) or at run time
 * (EXIT_FAILURE): the two outcomes a script can act on.
 */
/** A runtime failure: a key provider, an external program, a disk or network check. */
export const EXIT_FAILURE = 1;
/** Wrong command-line usage or an invalid configuration file. */
export const EXIT_USAGE = 2;

export class FdeError extends Error {
  override name = "FdeError";
  readonly exitCode: number;
  /** What the user should check next; printed after the message. */
  readonly hint?: string;

  constructor(message: string, options: { cause?: unknown; exitCode?: number; hint?: string } = {}) {
    super(message, { cause: options.cause });
    this.exitCode = options.exitCode ?? EXIT_FAILURE;
    this.hint = options.hint;
  }
}

/** Invalid or unreadable configuration (fde.toml, global.toml, metadata.toml, volume files). Exit 2. */
export class ConfigError extends FdeError {
  override name = "ConfigError";
  constructor(message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(message, { ...options, exitCode: EXIT_USAGE });
  }
}

/** Wrong command-line usage. Exit 2, like most CLI tools. */
export class UsageError extends FdeError {
  override name = "UsageError";
  constructor(message: string) {
    super(message, { exitCode: EXIT_USAGE });
  }
}

/** A key provider could not produce a key. Names the provider and the volume. */
export class KeyProviderError extends FdeError {
  override name = "KeyProviderError";
  readonly provider: string;
  constructor(provider: string, message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(`${provider} key provider: ${message}`, options);
    this.provider = provider;
  }
}

/**
 * How a program run failed: it could not be started, exited with a code (or signal) not counted
 * as success, ran past its timeout, printed more than its stdout cap, or exited while processes
 * it left behind still held its stdout (the output may be incomplete).
 */
export type CommandFailure = "start" | "exit" | "timeout" | "overflow" | "leftovers";

export interface CommandErrorOptions {
  hint?: string;
  /** Default "exit". */
  failure?: CommandFailure;
  /** Our own line after the stderr tail in the message ("timed out after 5000 ms"). */
  reason?: string;
  /** The signal that ended the program, when it was one. */
  signal?: string | null;
  /** Pids of the leftover processes that were killed. */
  leftovers?: number[];
}

/** An external program (cryptsetup, veritysetup, lvm, ...) failed. */
export class CommandError extends FdeError {
  override name = "CommandError";
  readonly command: string;
  readonly code: number | null;
  /** The program's own stderr (its tail), without `reason`. */
  readonly stderr: string;
  readonly failure: CommandFailure;
  readonly reason?: string;
  readonly signal: string | null;
  readonly leftovers: number[];
  constructor(command: string, code: number | null, stderr: string, options: CommandErrorOptions = {}) {
    const shown = options.reason === undefined ? stderr : `${stderr}\n${options.reason}`;
    const detail = shown.trim().split("\n").slice(-5).join("\n");
    super(
      `${command} failed${code === null ? " (killed or timed out)" : ` with exit code ${code}`}${detail ? `: ${detail}` : ""}`,
      { hint: options.hint },
    );
    this.command = command;
    this.code = code;
    this.stderr = stderr;
    this.failure = options.failure ?? "exit";
    this.reason = options.reason;
    this.signal = options.signal ?? null;
    this.leftovers = options.leftovers ?? [];
  }
}

/** Render any thrown value as the paragraph a user sees (no stack trace unless verbose). */
export function formatError(err: unknown, verbose = false): string {
  if (!(err instanceof Error)) return String(err);
  const lines = [err.message];
  if (err instanceof FdeError && err.hint) lines.push(`Hint: ${err.hint}`);
  lines.push(...causeLines(err, err.message));
  if (verbose && err.stack && !(err instanceof FdeError)) lines.push(err.stack);
  return lines.join("\n");
}

/** How many causes an error paragraph follows (a cause chain with a cycle must still end). */
export const MAX_CAUSE_DEPTH = 16;

/**
 * The "Caused by: ..." lines of err's cause chain, outermost first, skipping a cause whose message
 * `shown` already contains; a non-Error cause ends the chain. The one cause-chain walk, used by
 * formatError and the step runner's failure paragraph.
 */
export function causeLines(err: unknown, shown: string): string[] {
  const lines: string[] = [];
  let cause = err instanceof Error ? err.cause : undefined;
  for (let depth = 0; cause !== undefined && depth < MAX_CAUSE_DEPTH; depth++) {
    if (!(cause instanceof Error)) {
      lines.push(`Caused by: ${String(cause)}`);
      break;
    }
    if (!shown.includes(cause.message)) lines.push(`Caused by: ${cause.message}`);
    cause = cause.cause;
  }
  return lines;
}
