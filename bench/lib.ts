/**
 * The contract between bench/run.ts and the benchmark files, plus timing helpers.
 * A benchmark is any `bench/<name>.ts` (other than run.ts and lib.ts) whose default export is a
 * Benchmark. Every measurement is reported as a ratio against a baseline measured in the same run
 * on the same machine, so results from different machines stay comparable.
 */
import { tmpdir } from "node:os";

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
}

export interface Benchmark {
  /** Section title in results.md. */
  title: string;
  /** One or two sentences: what is compared and why the baseline is the right one. */
  description: string;
  run(ctx: BenchContext): Promise<Measurement[]>;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Wall-clock milliseconds of running `argv` to completion, `runs` times after two warm-up runs,
 * interleaved with the other commands given so that CPU-frequency drift and noise from other
 * processes hit all of them alike. Returns the median per command. Throws if a command fails.
 */
export function timeCommands(commands: string[][], runs: number, env?: Record<string, string>): number[] {
  const samples: number[][] = commands.map(() => []);
  for (let i = -2; i < runs; i++) {
    commands.forEach((argv, k) => {
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
      if (i >= 0) samples[k]!.push(elapsed);
    });
  }
  return samples.map(median);
}

export const scratchRoot = tmpdir();
