import { installDebInRoot, makeDeb } from "../lib/disk.ts";
import { eventLogScenario } from "../lib/eventlog.ts";
import { defineScenario } from "../lib/scenario.ts";
import arm64 from "./arm64.ts";

// refvalue-uki on arm64: the UKI that the arm64 guest's dracut builds with systemd's linuxaa64
// stub, at EFI/BOOT/BOOTAA64.EFI, booted by AAVMF with a swtpm TPM on the virt board;
// show-reference-value's predictions (on the host, and on the running guest) appear in the event
// log the firmware wrote. The image gets the arm64 package first, as in the arm64 scenario.
export default defineScenario({
  description:
    "arm64 UKI disk under AAVMF + swtpm: show-reference-value's value (BOOTAA64.EFI) is in the guest's TPM event log",
  arch: "arm64",
  skip: arm64.skip,
  timeoutSec: 3600,
  run: (ctx) =>
    eventLogScenario(ctx, "uki", {
      async prepareSource(source) {
        await installDebInRoot(source, await makeDeb(ctx, "arm64"));
      },
    }),
});
