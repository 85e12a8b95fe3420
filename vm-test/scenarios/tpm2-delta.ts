import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import type { FdeOptions } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

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

/** One swtpm per boot over a persistent state directory (PCRs reset at every boot, keys stay). */
function startSwtpm(stateDir: string, socket: string) {
  const proc = Bun.spawn(
    [
      "swtpm",
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${stateDir}`,
      "--ctrl",
      `type=unixio,path=${socket}`,
      "--flags",
      "startup-clear",
    ],
    { stdout: "ignore", stderr: "inherit" },
  );
  return {
    qemuArgs: [
      "-chardev",
      `socket,id=chrtpm,path=${socket}`,
      "-tpmdev",
      "emulator,id=tpm0,chardev=chrtpm",
      "-device",
      "tpm-tis,tpmdev=tpm0",
    ],
    async ready() {
      for (let i = 0; i < 100 && !existsSync(socket); i++) await Bun.sleep(50);
      if (!existsSync(socket)) throw new Error("swtpm did not create its control socket");
    },
    async stop() {
      proc.kill();
      await proc.exited;
    },
  };
}

export default defineScenario({
  description: "tpm2 provider with a swtpm TPM: delta key sealed on first boot, unsealed on the next",
  skip: () => (Bun.which("swtpm") ? undefined : "swtpm is not installed"),
  timeoutSec: 3600,
  async run(ctx) {
    const disk = await ctx.convert({ fde: FDE_TOML, rootfsKey: null });
    const stateDir = join(ctx.outDir, "tpm-state");
    mkdirSync(stateDir, { recursive: true });

    const bootWithTpm = async (label: string) => {
      const tpm = startSwtpm(stateDir, join(ctx.outDir, `swtpm-${label}.sock`));
      try {
        await tpm.ready();
        return await ctx.boot(disk, {
          label,
          quick: true,
          timeoutSec: 1200,
          extraQemuArgs: tpm.qemuArgs,
        });
      } finally {
        await tpm.stop();
      }
    };

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
