import { describe, expect, test } from "bun:test";
import { CommandError, KeyProviderError } from "../../src/errors.ts";
import { failureParagraph, runSteps, StepsFailed, stepLine } from "../../src/steps.ts";

describe("numbered steps", () => {
  test("lines are numbered, padded and timed; steps run in order", async () => {
    const lines: string[] = [];
    const order: string[] = [];
    let t = 0;
    const clock = () => (t += 400);
    const steps = Array.from({ length: 10 }, (_, i) => ({
      title: `step ${i + 1}`,
      run: async () => {
        order.push(`step ${i + 1}`);
      },
    }));
    await runSteps("test", steps, {}, (l) => lines.push(l), clock);
    expect(order).toEqual(steps.map((s) => s.title));
    expect(lines[0]).toBe("[  1/10 ] step 1 ...");
    expect(lines[1]).toBe("[  1/10 ] step 1 ... done in 0.4 s");
    expect(lines.at(-1)).toBe("[ 10/10 ] step 10 ... done in 0.4 s");
    expect(stepLine(3, 6, "opening dm-verity")).toBe("[ 3/6 ] opening dm-verity ...");
  });

  test("the first failure stops the run with one paragraph naming step, device and provider", async () => {
    const lines: string[] = [];
    const ran: string[] = [];
    const ctx: { provider?: string } = {};
    const err = await runSteps(
      "cryptpilot-fde initrd-fde-before-sysroot",
      [
        { title: "one", run: async () => void ran.push("one") },
        {
          title: "unlocking the delta volume",
          device: () => "/dev/mapper/cryptpilot-delta",
          run: async (c: { provider?: string }) => {
            c.provider = "exec /usr/bin/get-key";
            throw new CommandError("cryptsetup open", 2, "No key available with this passphrase.", {
              hint: "the key did not open /dev/mapper/cryptpilot-delta",
            });
          },
        },
        { title: "never", run: async () => void ran.push("never") },
      ],
      ctx,
      (l) => lines.push(l),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(StepsFailed);
    expect(ran).toEqual(["one"]);
    expect(lines.at(-1)).toMatch(/^\[ 2\/3 \] unlocking the delta volume \.\.\. FAILED after \d+\.\d s$/);
    expect(err.message).toBe(
      [
        "cryptpilot-fde initrd-fde-before-sysroot failed at step 2/3 (unlocking the delta volume): cryptsetup open failed with exit code 2: No key available with this passphrase.",
        "Device: /dev/mapper/cryptpilot-delta",
        "Key provider: exec /usr/bin/get-key",
        "Check: the key did not open /dev/mapper/cryptpilot-delta",
      ].join("\n"),
    );
  });

  test("a provider error names the provider even without context", () => {
    const text = failureParagraph({
      what: "boot",
      index: 3,
      total: 6,
      title: "unlocking the encrypted rootfs",
      error: new KeyProviderError("kbs", "resource not found", { hint: "check the KBS policy" }),
    });
    expect(text).toContain("Key provider: kbs");
    expect(text).toContain("Check: check the KBS policy");
    expect(text.split("\n")[0]).toBe(
      "boot failed at step 3/6 (unlocking the encrypted rootfs): kbs key provider: resource not found",
    );
  });
});
