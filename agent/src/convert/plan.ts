/**
 * The convert pipeline: options -> the ordered steps. PIPELINE below is the whole order in one
 * place, each step with the condition under which it runs; `plan` picks the steps for a set of
 * options and checks that every result a step needs is set by an earlier one, exactly once,
 * before anything touches a disk.
 */
import { FdeError } from "../errors.ts";
import type { Step } from "../steps.ts";
import type { ConvertCtx, ConvertStep, ResultName } from "./context.ts";
import type { ConvertOptions } from "./options.ts";
import { rewriteEntries } from "./steps/boot-entries.ts";
import { finish } from "./steps/finish.ts";
import { prepareGuest } from "./steps/guest.ts";
import { rebuildInitrds } from "./steps/initrd.ts";
import { encryptRoot, formatVerity, plainRoot, shrinkRoot } from "./steps/rootfs.ts";
import { extractRoot, readSource } from "./steps/source.ts";
import { enrollTpm2Key, sealTpm2Key } from "./steps/tpm2.ts";
import { writeDisk, writeLvm } from "./steps/write-disk.ts";

interface Planned {
  step: ConvertStep;
  /** Runs only when this holds for the options; always when absent. */
  when?: (o: ConvertOptions) => boolean;
}

const encrypted = (o: ConvertOptions) => o.rootfsKey !== undefined;

export const PIPELINE: readonly Planned[] = [
  // Sealed first: a TPM that refuses fails the run before the long work.
  { step: sealTpm2Key, when: (o) => o.tpm2Enroll !== undefined },
  { step: readSource },
  { step: extractRoot },
  { step: prepareGuest },
  { step: shrinkRoot },
  { step: formatVerity },
  { step: rebuildInitrds },
  // A UKI carries its own command line; GRUB's and BLS entries are rewritten.
  { step: rewriteEntries, when: (o) => !o.uki },
  { step: encryptRoot, when: encrypted },
  { step: plainRoot, when: (o) => !encrypted(o) },
  { step: enrollTpm2Key, when: (o) => encrypted(o) && o.tpm2Enroll !== undefined },
  { step: writeDisk },
  { step: writeLvm },
  { step: finish },
];

/** The steps for these options, in order; throws if their needs and sets do not line up. */
export function plan(o: ConvertOptions, pipeline: readonly Planned[] = PIPELINE): ConvertStep[] {
  const steps = pipeline.filter((p) => p.when?.(o) ?? true).map((p) => p.step);
  checkPlan(steps);
  return steps;
}

/** Every need set by an earlier step, every result set by one step only. */
export function checkPlan(steps: readonly ConvertStep[]): void {
  const setBy = new Map<ResultName, string>();
  for (const s of steps) {
    for (const name of s.needs)
      if (!setBy.has(name))
        throw new FdeError(
          `convert plan: step ${s.id} needs the result '${name}', which no earlier step sets`,
        );
    for (const name of s.sets) {
      const earlier = setBy.get(name);
      if (earlier)
        throw new FdeError(`convert plan: the result '${name}' is set by both ${earlier} and ${s.id}`);
      setBy.set(name, s.id);
    }
  }
}

/** The step runner's view: titles for these options, each run through the result store. */
export function runnerSteps(steps: readonly ConvertStep[], o: ConvertOptions): Step<ConvertCtx>[] {
  return steps.map((s) => ({
    title: typeof s.title === "function" ? s.title(o) : s.title,
    device: s.device,
    run: (c: ConvertCtx) => c.results.run(s, c),
  }));
}
