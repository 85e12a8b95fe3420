/**
 * The initrd boot stages, named once: `boot-service --stage` accepts these, the dracut module's
 * systemd units pass them, boot/index.ts runs them and bench/boot.ts reads their journal lines.
 * Upstream cryptpilot's names; changing one breaks the units of already converted disks.
 */
export const BEFORE_SYSROOT = "initrd-fde-before-sysroot";
export const AFTER_SYSROOT = "initrd-fde-after-sysroot";

/** In the order they run. */
export const STAGES = [BEFORE_SYSROOT, AFTER_SYSROOT] as const;
export type Stage = (typeof STAGES)[number];

export function isStage(name: string): name is Stage {
  return (STAGES as readonly string[]).includes(name);
}
