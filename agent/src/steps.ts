/**
 * The step runner shared by the boot stages (boot/) and `convert` (convert/plan.ts).
 * Named, numbered steps (like Ignition's stages): each prints `[ 3/6 ] title ...` when it
 * starts and `... done in 0.4 s` when it ends; the first failure stops the run and is reported
 * as one paragraph naming the step, the device, the key provider and what to check.
 */
import { CommandError, causeLines, FdeError, KeyProviderError } from "./errors.ts";
import { log } from "./log.ts";

export interface Step<C> {
  title: string;
  /** Device the step works on, for the failure paragraph. */
  device?: (ctx: C) => string | undefined;
  run(ctx: C): Promise<void>;
}

export interface StepFailure {
  what: string;
  index: number;
  total: number;
  title: string;
  device?: string;
  provider?: string;
  error: unknown;
}

export type Writer = (line: string) => void;

const consoleWriter: Writer = (line) => log.info(line);

export function stepLine(index: number, total: number, title: string): string {
  const width = String(total).length;
  return `[ ${String(index).padStart(width)}/${total} ] ${title} ...`;
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** The one paragraph a failed step prints (no stack trace). */
export function failureParagraph(f: StepFailure): string {
  const err = f.error;
  const message = err instanceof Error ? err.message : String(err);
  const lines = [`${f.what} failed at step ${f.index}/${f.total} (${f.title}): ${message}`];
  if (f.device) lines.push(`Device: ${f.device}`);
  const provider = err instanceof KeyProviderError ? err.provider : f.provider;
  if (provider) lines.push(`Key provider: ${provider}`);
  const hint = err instanceof FdeError ? err.hint : undefined;
  if (hint) lines.push(`Check: ${hint}`);
  else if (err instanceof CommandError) lines.push(`Check: the output of '${err.command}' above`);
  lines.push(...causeLines(err, message));
  return lines.join("\n");
}

export class StepsFailed extends FdeError {
  override name = "StepsFailed";
  readonly failure: StepFailure;
  constructor(failure: StepFailure) {
    super(failureParagraph(failure), {
      exitCode: failure.error instanceof FdeError ? failure.error.exitCode : 1,
    });
    this.failure = failure;
  }
}

/** Context objects may carry the provider currently in use, for failure messages. */
export interface ProviderAware {
  provider?: string;
}

/**
 * Run steps in order. Steps whose `skip` returns true are not counted. Throws StepsFailed
 * (already formatted) on the first failure.
 */
export async function runSteps<C extends ProviderAware>(
  what: string,
  steps: Step<C>[],
  ctx: C,
  write: Writer = consoleWriter,
  now: () => number = performance.now.bind(performance),
): Promise<void> {
  const total = steps.length;
  for (const [i, step] of steps.entries()) {
    const line = stepLine(i + 1, total, step.title);
    write(line);
    const start = now();
    try {
      await step.run(ctx);
    } catch (error) {
      write(`${line} FAILED after ${seconds(now() - start)}`);
      throw new StepsFailed({
        what,
        index: i + 1,
        total,
        title: step.title,
        device: step.device?.(ctx),
        provider: ctx.provider,
        error,
      });
    }
    write(`${line} done in ${seconds(now() - start)}`);
  }
}
