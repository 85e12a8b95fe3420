/**
 * What convert's steps share. Fixed inputs (options, work paths) are set when the run starts;
 * everything a step computes for a later one is a named result, set once by the step that makes
 * it and read through `io.need(name)`, which names the step that should have set it. Each step
 * declares the results it needs and sets (convert/plan.ts checks the order before anything runs);
 * reading or setting an undeclared one fails too, so the declarations cannot drift from the code.
 */
import { join } from "node:path";
import type { Arch } from "../arch.ts";
import { FdeError } from "../errors.ts";
import type { ProviderAware } from "../steps.ts";
import type { NewSealedKey } from "../tpm/enroll.ts";
import type { Cleanup } from "./cleanup.ts";
import type { Kernel } from "./guest.ts";
import type { Layout, Region } from "./layout.ts";
import type { ConvertOptions } from "./options.ts";
import type { Partition, PartitionTable } from "./source.ts";

/** The source disk as read: its partitions, the root filesystem chosen, the ESP if any. */
export interface SourceDisk {
  table: PartitionTable;
  root: Partition;
  esp?: Partition;
}

/** The boot files staged in ctx.bootStaging (from the guest's /boot or a separate /boot partition). */
export interface BootFiles {
  /** The source's separate /boot partition, if it had one (its GRUB searches move to the new one). */
  oldBoot?: Partition;
}

/** The rebuilt initrds (or, with --uki, the one UKI). */
export interface Initrds {
  kernels: Kernel[];
  /** --uki: the UKI built by the guest's dracut, to be EFI/BOOT/BOOT<arch>.EFI on the new ESP (arch.ts efiBootPath). */
  ukiFile?: string;
}

/** The file that becomes the rootfs LV and the LV's size (LUKS2 image, or the plain filesystem). */
export interface RootfsLv {
  file: string;
  size: number;
}

/** Every result a step hands to a later one, by name. */
export interface Results {
  /** --tpm2-enroll: the new rootfs key and its sealed copy (sealed first, to fail early). */
  tpm2Key: NewSealedKey;
  source: SourceDisk;
  /** The guest's architecture (convert/guest-arch.ts): its UKI stub and ESP boot file name. */
  guest: { arch: Arch };
  bootFiles: BootFiles;
  verity: { rootHash: string };
  initrds: Initrds;
  rootfsLv: RootfsLv;
  disk: { layout: Layout };
  /** The PV's unallocated extents in the output. */
  lvm: { pvFree: Region };
}

export type ResultName = keyof Results;

/** A step's access to the results: only what it declared it needs and sets. */
export interface StepIO<N extends ResultName = ResultName, S extends ResultName = ResultName> {
  need<K extends N>(name: K): Results[K];
  set<K extends S>(name: K, value: Results[K]): void;
}

export interface ConvertCtx extends ProviderAware {
  readonly opts: ConvertOptions;
  readonly cleanup: Cleanup;
  /** Private work directory; everything below is inside it except `partial` for --in/--out. */
  readonly work: string;
  readonly srcRaw: string;
  readonly rootfsImg: string;
  readonly hashImg: string;
  /** /etc/cryptpilot as the initrd gets it (config files, metadata.toml). */
  readonly cfgDir: string;
  readonly bootStaging: string;
  readonly guestMount: string;
  /** The output as it is assembled: DST.partial (--in/--out) or a work file (--device). */
  readonly partial: string;
  /** UUID of the new boot partition (GRUB's searches are rewritten to it). */
  readonly bootUuid: string;
  readonly results: ResultStore;
}

/** One convert step: the runner's title and device, plus the results it needs and sets. */
export interface ConvertStep {
  /** The step's name in error messages (its function's name). */
  id: string;
  title: string | ((o: ConvertOptions) => string);
  /** Device the step works on, for the failure paragraph. */
  device?: (c: ConvertCtx) => string | undefined;
  needs: readonly ResultName[];
  sets: readonly ResultName[];
  run(c: ConvertCtx, io: StepIO): Promise<void>;
}

/** A step whose io is typed by its declarations: `io.need` only takes names listed in `needs`. */
export function defineStep<N extends ResultName = never, S extends ResultName = never>(
  id: string,
  title: ConvertStep["title"],
  def: {
    device?: (c: ConvertCtx) => string | undefined;
    needs?: readonly N[];
    sets?: readonly S[];
    run(c: ConvertCtx, io: StepIO<N, S>): Promise<void>;
  },
): ConvertStep {
  return { id, title, ...def, needs: def.needs ?? [], sets: def.sets ?? [] } as ConvertStep;
}

/** A bug in the plan or a step (not in the input): named, exit 1, no stack trace. */
function planBug(message: string): FdeError {
  return new FdeError(`convert: ${message}`, {
    hint: "this is a bug in agent/src/convert (the plan or a step's declarations); please report it",
  });
}

/** An option the plan runs this step only with (e.g. --tpm2-enroll's): present, or a named plan bug. */
export function needOption<T>(value: T | undefined, step: string, option: string): T {
  if (value === undefined) throw planBug(`step ${step} runs only with ${option} (see convert/plan.ts)`);
  return value;
}

/** The results of one run: each set once, by the step the plan says sets it. */
export class ResultStore {
  readonly #values = new Map<ResultName, { value: unknown; by: string }>();
  /** Which step of this plan sets each result, to name it when a result is missing. */
  readonly #setBy: ReadonlyMap<ResultName, string>;

  constructor(steps: readonly ConvertStep[]) {
    this.#setBy = new Map(steps.flatMap((s) => s.sets.map((name) => [name, s.id] as const)));
  }

  /** A result if it is there: for failure messages, which must not throw. */
  peek<K extends ResultName>(name: K): Results[K] | undefined {
    return this.#values.get(name)?.value as Results[K] | undefined;
  }

  /** Run one step with io limited to its declarations; afterwards, each declared result must be set. */
  async run(step: ConvertStep, c: ConvertCtx): Promise<void> {
    await step.run(c, this.io(step));
    for (const name of step.sets)
      if (!this.#values.has(name))
        throw planBug(`step ${step.id} ended without setting its result '${name}'`);
  }

  /** The io a step gets (exported through `run`; public for tests of the checks). */
  io(step: Pick<ConvertStep, "id" | "needs" | "sets">): StepIO {
    return {
      need: <K extends ResultName>(name: K): Results[K] => {
        if (!step.needs.includes(name))
          throw planBug(`step ${step.id} reads the result '${name}' without declaring it in its needs`);
        const entry = this.#values.get(name);
        if (!entry) {
          const by = this.#setBy.get(name);
          throw planBug(
            `step ${step.id} needs the result '${name}', ${by ? `which step ${by} sets, but ${by} has not run yet` : "which no step of this plan sets"}`,
          );
        }
        return entry.value as Results[K];
      },
      set: <K extends ResultName>(name: K, value: Results[K]): void => {
        if (!step.sets.includes(name))
          throw planBug(`step ${step.id} sets the result '${name}' without declaring it in its sets`);
        const earlier = this.#values.get(name);
        if (earlier)
          throw planBug(`the result '${name}' is set twice (by ${earlier.by}, then by ${step.id})`);
        this.#values.set(name, { value, by: step.id });
      },
    };
  }
}

/** The context of one run: work paths inside `work`, a fresh boot UUID, an empty result store. */
export function newContext(
  opts: ConvertOptions,
  cleanup: Cleanup,
  work: string,
  steps: readonly ConvertStep[],
): ConvertCtx {
  return {
    opts,
    cleanup,
    work,
    srcRaw: join(work, "src.raw"),
    rootfsImg: join(work, "rootfs.img"),
    hashImg: join(work, "rootfs_hash.img"),
    cfgDir: join(work, "etc-cryptpilot"),
    bootStaging: join(work, "boot"),
    guestMount: join(work, "guest"),
    partial: partialPath(opts, work),
    bootUuid: crypto.randomUUID(),
    results: new ResultStore(steps),
  };
}

/** Where the output is assembled: next to DST (renamed when complete), or in `work` for --device. */
export const partialPath = (opts: Pick<ConvertOptions, "device" | "output">, work: string): string =>
  opts.device ? join(work, "out.raw") : `${opts.output}.partial`;
