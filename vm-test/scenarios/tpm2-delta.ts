import { join } from "node:path";
import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import type { FdeOptions } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";
import { withSwtpm } from "../lib/swtpm.ts";

// The delta key sealed to the guest's (swtpm) TPM by the tpm2 provider: (1) first boot seals a
// new key to PCR 7 in the initrd and stores the token in the delta's LUKS2 header; (2) the next
// boot unseals it and the persistent delta keeps boot 1's data. (The PCR-change failure is
// covered on the host, agent/test/tpm; a VM boot with PCR 7 extended in the initrd is still to do.)

const fde: FdeOptions = { deltaLocation: "disk-persist", deltaBackend: "dm-snapshot", encryptRootfs: false };
const FDE_TOML = [
  "[rootfs]",
  'delta_location = "disk-persist"',
  'delta_backend = "dm-snapshot"',
  "",
  "[delta]",
  "integrity = false",
  "",
  "[delta.encrypt.tpm2]",
  "pcrs = [7]",
  "",
].join("\n");

export default defineScenario({
  description: "tpm2 provider with a swtpm TPM: delta key sealed on first boot, unsealed on the next",
  skip: () => (Bun.which("swtpm") ? undefined : "swtpm is not installed"),
  timeoutSec: 3600,
  async run(ctx) {
    const disk = await ctx.convert({ fde: FDE_TOML, rootfsKey: null });
    const stateDir = join(ctx.outDir, "tpm-state");

    // One swtpm per boot over the same state: PCRs reset at every boot, the sealing keys stay.
    const bootWithTpm = (label: string) =>
      withSwtpm(stateDir, join(ctx.outDir, `swtpm-${label}.sock`), (tpm) =>
        ctx.boot(disk, { label, quick: true, timeoutSec: 1200, extraQemuArgs: tpm.qemuArgs }),
      );

    const first = await bootWithTpm("seal");
    expectFdeRoot(ctx, first, fde);
    ctx.check(
      /sealing a new key for volume delta/.test(first.serial) &&
        /stored the sealed key of volume delta/.test(first.serial),
      "the first boot did not seal the delta key and store the token",
      first,
    );

    const second = await bootWithTpm("unseal");
    expectFdeRoot(ctx, second, fde);
    expectPersistence(ctx, first, second, fde);
  },
});
