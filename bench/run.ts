/**
 * `make bench`: runs every benchmark in bench/ (or those named on the command line) and rewrites
 * their sections of bench/results.md. Sections of benchmarks not run are kept, so each can be
 * refreshed on its own: `node_modules/.bin/bun bench/run.ts startup`.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { basename, join, resolve } from "node:path";
import { type BenchContext, type Benchmark, type Measurement, scratchRoot } from "./lib.ts";

const ROOT = resolve(import.meta.dir, "..");
const RESULTS = join(ROOT, "bench/results.md");
const NOT_BENCHMARKS = new Set(["run.ts", "lib.ts"]);

function format(value: number, unit: string): string {
  if (unit === "bytes") return `${(value / 1024 / 1024).toFixed(1)} MiB`;
  if (unit === "ms") return `${value.toFixed(value < 10 ? 2 : 1)} ms`;
  return `${Number.isInteger(value) ? value : value.toFixed(2)} ${unit}`;
}

function section(
  name: string,
  bench: Benchmark,
  measurements: Measurement[],
  details: string[],
  date: string,
): string {
  const rows = measurements.map(
    (m) =>
      `| ${m.name} | ${format(m.value, m.unit)} | ${m.baseline.name}: ${format(m.baseline.value, m.unit)} | ${(m.value / m.baseline.value).toFixed(2)}x |`,
  );
  const notes = measurements.filter((m) => m.note).map((m) => `- ${m.name}: ${m.note}`);
  return [
    `<!-- bench:${name} -->`,
    `## ${bench.title}`,
    "",
    `Run ${date} (\`bench/${name}.ts\`). ${bench.description}`,
    "",
    "| measurement | ours | baseline (same run) | ratio |",
    "|---|---|---|---|",
    ...rows,
    ...(notes.length ? ["", ...notes] : []),
    ...details.flatMap((d) => ["", d]),
    `<!-- /bench:${name} -->`,
  ].join("\n");
}

function existingSections(): Map<string, string> {
  const sections = new Map<string, string>();
  let text = "";
  try {
    text = readFileSync(RESULTS, "utf8");
  } catch {
    return sections;
  }
  for (const m of text.matchAll(/<!-- bench:([\w-]+) -->[\s\S]*?<!-- \/bench:\1 -->/g))
    sections.set(m[1]!, m[0]);
  return sections;
}

function machine(): string {
  const cpu = cpus();
  const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT })
    .stdout.toString()
    .trim();
  return `${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}, commit ${commit || "unknown"}`;
}

const wanted = process.argv.slice(2);
const available = readdirSync(join(ROOT, "bench"))
  .filter((f) => f.endsWith(".ts") && !NOT_BENCHMARKS.has(f) && !f.endsWith(".d.ts"))
  .map((f) => basename(f, ".ts"))
  .sort();
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(", ")}; available: ${available.join(", ")}`);
  process.exit(2);
}

const fresh = new Map<string, string>();
const date = new Date().toISOString().replace(/\.\d+Z$/, "Z");
let failed = 0;
for (const name of wanted.length ? wanted : available) {
  const mod = (await import(join(ROOT, "bench", `${name}.ts`))) as { default?: Benchmark };
  const bench = mod.default;
  if (!bench || typeof bench.run !== "function") {
    console.error(`bench/${name}.ts has no default-exported Benchmark; skipped`);
    continue;
  }
  const skipped = bench.skip?.();
  if (skipped) {
    console.error(`=== ${bench.title} (bench/${name}.ts): SKIPPED: ${skipped}`);
    continue;
  }
  const details: string[] = [];
  const tmp = mkdtempSync(join(scratchRoot, `bench-${name}-`));
  const ctx: BenchContext = {
    root: ROOT,
    binary: join(ROOT, "dist/cryptpilot-fde"),
    tmp,
    runs: Number(process.env.BENCH_RUNS) || 20,
    log: (message) => console.error(`[${name}] ${message}`),
    details: (markdown) => details.push(markdown),
  };
  console.error(`=== ${bench.title} (bench/${name}.ts)`);
  try {
    const measurements = await bench.run(ctx);
    fresh.set(name, section(name, bench, measurements, details, date));
    for (const m of measurements) {
      console.error(
        `  ${m.name}: ${format(m.value, m.unit)} vs ${format(m.baseline.value, m.unit)} (${(m.value / m.baseline.value).toFixed(2)}x)`,
      );
    }
  } catch (err) {
    failed++;
    console.error(`  failed: ${(err as Error).message}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// Read just before writing: a long benchmark must not drop sections others wrote meanwhile.
const sections = existingSections();
for (const [name, text] of fresh) sections.set(name, text);
const body = [...sections.entries()]
  .filter(([name]) => available.includes(name))
  .sort(([a], [b]) => a.localeCompare(b))
  .map(([, text]) => text);
writeFileSync(
  RESULTS,
  `# Benchmark results\n\nWritten by \`make bench\` (bench/run.ts); last run ${date} on ${machine()}.\n` +
    "Each value is compared with a baseline measured in the same run on the same machine; the ratio is ours / baseline.\n\n" +
    `${body.join("\n\n")}\n`,
);
console.error(`wrote ${RESULTS}`);
process.exit(failed ? 1 : 0);
