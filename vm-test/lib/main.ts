/**
 * vm-test/run SCENARIO...|all [--list] [--keep]
 * Runs QEMU boot scenarios (vm-test/scenarios/*.ts), CPTEST_VMS (default 2) at a time, and ends with
 * "N passed, N failed, N skipped". Exit status 1 when any scenario failed.
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { baseImage } from "./base.ts";
import { clearConvertCache, createContext, VM_SLOTS } from "./context.ts";
import { withLock } from "./lock.ts";
import { killQemu } from "./qemu.ts";
import type { BaseImage, Scenario } from "./scenario.ts";

const repo = resolve(import.meta.dir, "..", "..");
const scenarioDir = join(repo, "vm-test", "scenarios");

async function loadScenarios(): Promise<Map<string, Scenario>> {
  const scenarios = new Map<string, Scenario>();
  for (const file of readdirSync(scenarioDir)
    .filter((f) => f.endsWith(".ts"))
    .sort()) {
    const mod = (await import(join(scenarioDir, file))) as { default?: Scenario };
    // Helper modules may sit next to the scenarios; a scenario's default export has run().
    if (typeof mod.default?.run === "function") scenarios.set(basename(file, ".ts"), mod.default);
  }
  return scenarios;
}

function readCiList(): string[] {
  return readFileSync(join(repo, "vm-test", "ci-scenarios"), "utf8")
    .split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter(Boolean);
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const keep = args.includes("--keep");
  const names = args.filter((a) => !a.startsWith("--"));
  const scenarios = await loadScenarios();
  if (args.includes("--list") || names.length === 0) {
    for (const [name, s] of scenarios) console.log(`${name.padEnd(28)} ${s.description}`);
    if (names.length === 0 && !args.includes("--list")) {
      console.error("usage: vm-test/run SCENARIO...|all|ci [--keep] [--list]");
      return 2;
    }
    return 0;
  }
  // "ci": the scenarios listed in vm-test/ci-scenarios, in that order; every other scenario is
  // reported as skipped with the reason, so the CI summary shows what it did not boot.
  const ciList = names.includes("ci") ? readCiList() : undefined;
  const notInCi = ciList
    ? [...scenarios.keys()].filter((n) => !ciList.includes(n) && scenarios.get(n)!.inAll !== false)
    : [];
  const selected = ciList
    ? ciList
    : names.includes("all")
      ? [...scenarios.entries()].filter(([, s]) => s.inAll !== false).map(([n]) => n)
      : names;
  for (const name of selected) {
    if (!scenarios.has(name)) {
      console.error(`unknown scenario '${name}' (vm-test/run --list shows them)`);
      return 2;
    }
  }

  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const name of notInCi) {
    console.log(
      `SKIP ${name}: not in vm-test/ci-scenarios (not yet verified on a CI machine; run vm-test/run ${name})`,
    );
    skipped++;
  }
  // One base image per Debian release, built when the first scenario on it starts.
  const bases = new Map<string, Promise<BaseImage>>();
  // CPTEST_BUDGET_MIN: scenarios not started within this many minutes are skipped (and said so),
  // so a CI run ends inside its time limit instead of being killed with no summary at all.
  const budgetMin = Number(process.env.CPTEST_BUDGET_MIN ?? 0);
  const runStarted = Date.now();
  const runOne = async (name: string) => {
    const scenario = scenarios.get(name)!;
    const elapsedMin = (Date.now() - runStarted) / 60_000;
    const reason =
      budgetMin > 0 && elapsedMin > budgetMin
        ? `time budget: ${elapsedMin.toFixed(0)} of CPTEST_BUDGET_MIN=${budgetMin} minutes used`
        : await scenario.skip?.();
    if (reason) {
      console.log(`SKIP ${name}: ${reason}`);
      skipped++;
      return;
    }
    const started = Date.now();
    const tags = [scenario.guest, scenario.arch].filter(Boolean).join(" ");
    console.log(`RUN  ${name}${tags ? ` [${tags}]` : ""}: ${scenario.description}`);
    try {
      const suite = scenario.guest ?? "bookworm";
      const arch = scenario.arch ?? "amd64";
      const baseKey = `${suite}-${arch}`;
      if (!bases.has(baseKey)) bases.set(baseKey, baseImage(repo, suite, arch));
      const image = await bases.get(baseKey)!;
      // A second runner of the same scenario (another terminal, CI) waits instead of clobbering it.
      const lock = join(repo, "vm-test", "out", `.${name}.lock`);
      await withLock(
        lock,
        () => console.log(`  [${name}] waiting for another run of this scenario`),
        async () => {
          const ctx = createContext(name, repo, image);
          const limit = (scenario.timeoutSec ?? 3600) * 1000;
          let timer: Timer | undefined;
          await Promise.race([
            scenario.run(ctx),
            new Promise((_, reject) => {
              timer = setTimeout(
                () => reject(new Error(`scenario timed out after ${limit / 1000} s`)),
                limit,
              );
            }),
          ]).finally(() => {
            clearTimeout(timer);
            killQemu(name);
          });
          // Disk images are large; a passing scenario keeps only its logs.
          if (!keep)
            for (const f of readdirSync(ctx.outDir)) if (f.endsWith(".raw")) rmSync(join(ctx.outDir, f));
        },
      );
      console.log(`PASS ${name} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
      passed++;
    } catch (e) {
      console.log(`FAIL ${name} (${((Date.now() - started) / 1000).toFixed(0)} s): ${(e as Error).message}`);
      failed++;
    }
  };
  // VM_SLOTS scenarios at a time, taken in list order: while one converts its image on the host
  // or boots, the other boots (the QEMU slots in context.ts keep the VMs to VM_SLOTS).
  const pending = [...selected];
  const worker = async () => {
    for (let name = pending.shift(); name !== undefined; name = pending.shift()) await runOne(name);
  };
  await Promise.all(Array.from({ length: Math.min(VM_SLOTS, pending.length) }, worker));
  if (!keep) clearConvertCache(repo);
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed > 0 ? 1 : 0;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killQemu();
    clearConvertCache(repo);
    process.exit(130);
  });
}
process.exit(await main());
