/**
 * The contract between bench/run.ts and the benchmark files, plus timing helpers.
 * A benchmark is any `bench/<name>.ts` (other than run.ts and lib.ts) whose default export is a
 * Benchmark. Every measurement is reported as a ratio against a baseline measured in the same run
 * on the same machine, so results from different machines stay comparable.
 */
import { tmpdir } from "node:os";
import { resetPeakRss } from "../agent/testkit/rss.ts";

export interface Measurement {
  /** What was measured, e.g. "`--version` start-up (median of 30)". */
  name: string;
  value: number;
  unit: string;
  /** The reference it is compared to, measured in the same run. */
  baseline: { name: string; value: number };
  /** Extra context shown under the table. */
  note?: string;
}

export interface BenchContext {
  /** Repository root. */
  root: string;
  /** The compiled agent (`make bench` builds it first). */
  binary: string;
  /** A scratch directory for this run, removed afterwards. */
  tmp: string;
  /** Repetitions for timing loops; BENCH_RUNS overrides (keep it small on shared machines). */
  runs: number;
  log(message: string): void;
  /** Markdown shown below the section's table (e.g. a per-step breakdown). */
  details(markdown: string): void;
}

export interface Benchmark {
  /** Section title in results.md. */
  title: string;
  /** One or two sentences: what is compared and why the baseline is the right one. */
  description: string;
  /** A reason this machine cannot run the benchmark (printed; its section is kept as it was). */
  skip?(): string | undefined;
  run(ctx: BenchContext): Promise<Measurement[]>;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface CommandCost {
  /** Median wall-clock milliseconds. */
  wallMs: number;
  /** Median CPU milliseconds (user + system): steadier than wall time on a busy machine. */
  cpuMs: number;
  /** Median peak resident set size in bytes. */
  maxRss: number;
}

/**
 * Runs each of `commands` to completion `runs` times after two warm-up runs, interleaved so that
 * CPU-frequency drift and noise from other processes hit all of them alike, and returns the
 * medians per command. Throws if a command fails.
 */
export function measureCommands(
  commands: string[][],
  runs: number,
  env?: Record<string, string>,
): CommandCost[] {
  const samples = commands.map(() => ({ wall: [] as number[], cpu: [] as number[], rss: [] as number[] }));
  for (let i = -2; i < runs; i++) {
    commands.forEach((argv, k) => {
      resetPeakRss(); // the bench's own peak would count as the command's (testkit/rss.ts)
      const start = performance.now();
      const result = Bun.spawnSync(argv, {
        stdout: "ignore",
        stderr: "pipe",
        env: { ...process.env, ...env },
      });
      const elapsed = performance.now() - start;
      if (result.exitCode !== 0) {
        throw new Error(
          `${argv.join(" ")} exited with ${result.exitCode}: ${result.stderr.toString().trim()}`,
        );
      }
      if (i < 0) return;
      samples[k]!.wall.push(elapsed);
      const usage = result.resourceUsage;
      if (usage) {
        samples[k]!.cpu.push(Number(usage.cpuTime.total) / 1000);
        samples[k]!.rss.push(usage.maxRSS);
      }
    });
  }
  return samples.map((s) => ({ wallMs: median(s.wall), cpuMs: median(s.cpu), maxRss: median(s.rss) }));
}

/** Median wall-clock milliseconds per command (see measureCommands). */
export function timeCommands(commands: string[][], runs: number, env?: Record<string, string>): number[] {
  return measureCommands(commands, runs, env).map((c) => c.wallMs);
}

export const scratchRoot = tmpdir();
