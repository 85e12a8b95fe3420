/**
 * No import cycle in agent/src: a module never reaches itself through its imports, static or
 * lazy (`import()`), type-only imports excepted (erased at build). A cycle makes load order matter
 * and hides which layer depends on which; the CLI's was the last one (commands imported
 * parseCommandArgs from the table that loads them). The graph is read with a regex: enough for
 * this tree, whose imports are all `from "./x.ts"` / `import("./x.ts")` with literal paths.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../src");

/** Relative imports of one module's text, type-only ones left out. */
export function relativeImports(text: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s+(?!type\s)(?:[^"';]*?\s+from\s+)?["'](\.{1,2}\/[^"']+)["']/gms,
    /\bimport\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g,
  ];
  for (const pattern of patterns) for (const m of text.matchAll(pattern)) specs.push(m[1]!);
  return specs;
}

/** Module graph of every .ts file under `root`: file (relative to root) -> .ts files it imports (assets are leaves). */
export function importGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const files = readdirSync(root, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  for (const file of files) {
    const text = readFileSync(join(root, file), "utf8");
    const targets = relativeImports(text)
      .filter((spec) => spec.endsWith(".ts"))
      .map((spec) => relative(root, resolve(root, dirname(file), spec)));
    graph.set(file, targets);
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as the list of modules around it. */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === "open") cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return cycles;
}

test("the regex sees static, re-exported and lazy imports, and skips type-only ones", () => {
  const text = [
    'import { a } from "./a.ts";',
    'import type { B } from "./b.ts";',
    'export { c } from "../c.ts";',
    'import "./side-effect.ts";',
    "import {\n  d,\n  type D,\n} from './d.ts';",
    'const e = await import("./e.ts");',
    'import { f } from "node:fs";',
  ].join("\n");
  expect(relativeImports(text).sort()).toEqual(["../c.ts", "./a.ts", "./d.ts", "./e.ts", "./side-effect.ts"]);
});

test("the walk finds a cycle, including one through a lazy import", () => {
  const graph = new Map([
    ["cli/index.ts", ["cli/fetch-key.ts"]],
    ["cli/fetch-key.ts", ["cli/index.ts", "log.ts"]],
    ["log.ts", []],
  ]);
  expect(findCycles(graph)).toEqual([["cli/fetch-key.ts", "cli/index.ts", "cli/fetch-key.ts"]]);
  graph.set("cli/fetch-key.ts", ["log.ts"]);
  expect(findCycles(graph)).toEqual([]);
});

test("agent/src has no import cycle", () => {
  const graph = importGraph(SRC);
  expect(graph.size).toBeGreaterThan(100);
  const missing = [...graph].flatMap(([file, targets]) =>
    targets.filter((t) => !graph.has(t)).map((t) => `${file} -> ${t}`),
  );
  // An import the regex resolved wrongly would hide an edge: every target must be a known module.
  expect(missing).toEqual([]);
  expect(findCycles(graph).map((cycle) => cycle.join(" -> "))).toEqual([]);
});
