/** The CLI from source, for the show-reference-value tests (x86-64 and arm64 ESPs). */
import { expect } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../../..");

export function cli(...args: string[]) {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "agent/src/main.ts"), ...args], { stderr: "pipe" });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** show-reference-value's JSON; a failure throws with its stderr. */
export function showJson(...args: string[]): Record<string, string[]> {
  const r = cli("show-reference-value", ...args);
  if (r.code !== 0) throw new Error(`show-reference-value failed: ${r.stderr}`);
  expect(r.stdout.endsWith("}\n")).toBe(true);
  return JSON.parse(r.stdout);
}
