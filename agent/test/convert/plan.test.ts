/**
 * convert's pipeline without a disk: which steps run for which options, in what order, and that a
 * step reading a result that is missing, undeclared or set twice stops with a named error.
 */
import { describe, expect, test } from "bun:test";
import { type ConvertCtx, defineStep, ResultStore } from "../../src/convert/context.ts";
import type { ConvertOptions } from "../../src/convert/options.ts";
import { checkPlan, PIPELINE, plan, runnerSteps } from "../../src/convert/plan.ts";
import { encryptRoot, plainRoot } from "../../src/convert/steps/rootfs.ts";
import { writeDisk, writeLvm } from "../../src/convert/steps/write-disk.ts";
import { FdeError } from "../../src/errors.ts";
import { runSteps, StepsFailed } from "../../src/steps.ts";

const options = (o: Partial<ConvertOptions>): ConvertOptions => ({
  input: "/src.img",
  output: "/dst.img",
  device: false,
  configDir: "/etc/cryptpilot",
  bootPartSize: 512 * 1024 * 1024,
  uki: false,
  ukiAppendCmdline: "",
  assets: { agentBinary: "/nonexistent", moduleFiles: {} },
  ...o,
});
const KEY = new Uint8Array(32);
const TPM2: ConvertOptions["tpm2Enroll"] = { tcti: "swtpm:port=1", policy: { bank: "sha256", pcrs: [7] } };
const ids = (o: Partial<ConvertOptions>) => plan(options(o)).map((s) => s.id);

describe("convert plan", () => {
  test("GRUB, unencrypted: the entries are rewritten, the rootfs LV is the filesystem itself", () => {
    expect(ids({})).toEqual([
      "readSource",
      "extractRoot",
      "prepareGuest",
      "shrinkRoot",
      "formatVerity",
      "rebuildInitrds",
      "rewriteEntries",
      "plainRoot",
      "writeDisk",
      "writeLvm",
      "finish",
    ]);
  });

  test("encrypted with --tpm2-enroll: sealed first (fails early), enrolled right after encryption", () => {
    const list = ids({ rootfsKey: KEY, tpm2Enroll: TPM2 });
    expect(list[0]).toBe("sealTpm2Key");
    expect(list.slice(list.indexOf("encryptRoot"))).toEqual([
      "encryptRoot",
      "enrollTpm2Key",
      "writeDisk",
      "writeLvm",
      "finish",
    ]);
    expect(list).not.toContain("plainRoot");
  });

  test("--uki: no boot entries to rewrite; --device: the last step names the device", () => {
    expect(ids({ uki: true })).not.toContain("rewriteEntries");
    const o = options({ device: true, output: "/dev/vdb", input: "/dev/vdb" });
    expect(runnerSteps(plan(o), o).at(-1)?.title).toBe("writing the result to /dev/vdb");
    const f = options({});
    expect(runnerSteps(plan(f), f).at(-1)?.title).toBe("finishing /dst.img");
  });

  test("every option combination gives a plan whose needs are set earlier, exactly once", () => {
    let plans = 0;
    for (const uki of [false, true])
      for (const rootfsKey of [undefined, KEY])
        for (const tpm2Enroll of [undefined, TPM2])
          for (const device of [false, true]) {
            const steps = plan(options({ uki, rootfsKey, tpm2Enroll, device }));
            expect(steps.filter((s) => s.sets.includes("rootfsLv"))).toHaveLength(1);
            expect(steps.some((s) => s.id === "enrollTpm2Key")).toBe(
              rootfsKey !== undefined && tpm2Enroll !== undefined,
            );
            plans++;
          }
    expect(plans).toBe(16);
  });

  test("a pipeline in the wrong order is refused before anything runs, naming step and result", () => {
    const reordered = [...PIPELINE];
    const i = reordered.findIndex((p) => p.step === writeDisk);
    const [moved] = reordered.splice(i, 1);
    reordered.splice(1, 0, moved!);
    expect(() => plan(options({}), reordered)).toThrow(
      "convert plan: step writeDisk needs the result 'source', which no earlier step sets",
    );
    expect(() => checkPlan([plainRoot, encryptRoot])).toThrow(
      "convert plan: the result 'rootfsLv' is set by both plainRoot and encryptRoot",
    );
  });
});

describe("convert results", () => {
  const steps = plan(options({}));

  test("reading a result whose step has not run names that step (not a TypeError from `!`)", () => {
    const io = new ResultStore(steps).io(writeLvm);
    const err = (() => {
      try {
        io.need("disk");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FdeError);
    expect((err as FdeError).exitCode).toBe(1);
    expect((err as Error).message).toBe(
      "convert: step writeLvm needs the result 'disk', which step writeDisk sets, but writeDisk has not run yet",
    );
  });

  test("io is typed by the declarations: an undeclared read or set does not compile", () => {
    const step = defineStep("typed", "typed", {
      needs: ["source"],
      sets: ["verity"],
      async run(_c, io) {
        io.need("source");
        io.set("verity", { rootHash: "00" });
        // @ts-expect-error: 'disk' is not in needs (tsc fails on this line if io were untyped)
        io.need("disk");
        // @ts-expect-error: 'lvm' is not in sets
        io.set("lvm", { pvFree: { offset: 0, size: 0 } });
      },
    });
    expect(step.needs).toEqual(["source"]);
    expect(step.sets).toEqual(["verity"]);
  });

  test("a result is set once; reads and sets must be declared", () => {
    const store = new ResultStore(steps);
    store.io(plainRoot).set("rootfsLv", { file: "/a", size: 1 });
    expect(store.io(writeLvm).need("rootfsLv")).toEqual({ file: "/a", size: 1 });
    expect(() => store.io(encryptRoot).set("rootfsLv", { file: "/b", size: 2 })).toThrow(
      "the result 'rootfsLv' is set twice (by plainRoot, then by encryptRoot)",
    );
    expect(() => store.io(plainRoot).need("rootfsLv")).toThrow(
      "step plainRoot reads the result 'rootfsLv' without declaring it in its needs",
    );
    expect(() => store.io(writeLvm).set("verity", { rootHash: "00" })).toThrow(
      "step writeLvm sets the result 'verity' without declaring it in its sets",
    );
  });

  test("through the runner: a step that forgets its result, and one that needs a missing one, stop the run in one paragraph", async () => {
    const forgetful = defineStep("forgetful", "forgetting", { sets: ["verity"], async run() {} });
    const reader = defineStep("reader", "reading", {
      needs: ["lvm"],
      async run(_c, io) {
        io.need("lvm");
      },
    });
    const ctx = { results: new ResultStore([forgetful]) } as unknown as ConvertCtx;
    const lines: string[] = [];
    const o = options({});
    const failed = await runSteps("convert", runnerSteps([forgetful, reader], o), ctx, (l) =>
      lines.push(l),
    ).catch((e) => e);
    expect(failed).toBeInstanceOf(StepsFailed);
    expect(failed.message).toStartWith(
      "convert failed at step 1/2 (forgetting): convert: step forgetful ended without setting its result 'verity'",
    );
    expect(failed.exitCode).toBe(1);
    const ctx2 = { results: new ResultStore([reader]) } as unknown as ConvertCtx;
    const failed2 = await runSteps("convert", runnerSteps([reader], o), ctx2, () => {}).catch((e) => e);
    expect(failed2.message).toContain("step reader needs the result 'lvm', which no step of this plan sets");
    expect(failed2.message).not.toContain("TypeError");
  });
});
