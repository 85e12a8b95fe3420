import { installDebInRoot, makeDeb } from "../lib/disk.ts";
import { eventLogSourceFiles, predictReferenceValues } from "../lib/eventlog.ts";
import { defineScenario } from "../lib/scenario.ts";
import arm64 from "./arm64.ts";

// The UKI on arm64: convert --uki on the arm64 image (with the arm64 package, as in the arm64
// scenario) has the guest's dracut build the UKI with systemd's linuxaa64 stub and puts it at
// EFI/BOOT/BOOTAA64.EFI on a fresh ESP; AAVMF boots it through the FDE initrd.
// show-reference-value --disk predicts the UKI's digests, and the booted guest's own
// show-reference-value (running-system mode: it finds the ESP's arm64 UKI) prints the same values.
// Not compared with a firmware event log, as refvalue-uki does on x86-64: AAVMF measures into a
// TPM on the virt board (tpm-tis-device), but Debian 12's arm64 kernel has no driver for it
// (CONFIG_TCG_TIS is not set; only CRB, which QEMU offers on x86 only), so the guest never sees
// the log.
export default defineScenario({
  description:
    "arm64 UKI (linuxaa64 stub, EFI/BOOT/BOOTAA64.EFI) under AAVMF: boots through the FDE initrd; the guest's show-reference-value equals --disk's",
  arch: "arm64",
  skip: arm64.skip,
  timeoutSec: 3600,
  async run(ctx) {
    const source = await ctx.sourceDisk({ files: eventLogSourceFiles(ctx, "uki") });
    await installDebInRoot(source, await makeDeb(ctx, "arm64"));
    const disk = await ctx.convert({
      source,
      // The test guest's key helper (vm-test/guest/cptest-key); the key does not matter here.
      fde: '[rootfs]\n[delta]\n[delta.encrypt.exec]\ncommand = "/usr/local/bin/cptest-key"\nargs = ["delta"]\n',
      rootfsKey: null,
      uki: true,
    });
    const prediction = predictReferenceValues(ctx, disk);
    ctx.check(
      Object.keys(prediction.values).some((k) => k.startsWith("measurement.uki.")),
      `show-reference-value --disk predicted no UKI values: ${Object.keys(prediction.values).join(", ")}`,
    );
    const boot = await ctx.boot(disk, { label: "uki-arm64", uefi: true, timeoutSec: 1200 });
    ctx.expectReported(boot);
    ctx.check(
      boot.markers.get("root-source") === "/dev/mapper/rootfs",
      `root is ${boot.markers.get("root-source")}, not /dev/mapper/rootfs`,
      boot,
    );
    const guestJson = Buffer.from(boot.markers.get("check:refvalue") ?? "", "base64").toString();
    ctx.check(
      guestJson.trim() === prediction.json.trim(),
      `show-reference-value on the running arm64 guest differs from --disk (guest error: ${boot.markers.get("check:refvalue-error")}):\n${guestJson}`,
      boot,
    );
  },
});
