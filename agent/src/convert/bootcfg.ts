/**
 * Rewriting the guest's boot entries so that every one of them names `root=/dev/mapper/rootfs`:
 * a device only our agent creates, so an entry whose initrd lacks the agent cannot boot the
 * unverified rootfs (it waits for the root device and fails).
 */
import { ROOT_DEVICE } from "../disk/names.ts";
import { FdeError } from "../errors.ts";

/** dracut's own LVM/LUKS activation must keep its hands off the cryptpilot VG and the LUKS rootfs LV. */
export const EXTRA_ARGS = ["rd.lvm=0", "rd.luks=0"];

/** Replace every root= (and drop dracut root-device options); add ours. */
export function rewriteCmdline(cmdline: string): string {
  const tokens = cmdline.trim().split(/\s+/).filter(Boolean);
  const kept = tokens.filter(
    (t) =>
      !t.startsWith("root=") &&
      !t.startsWith("rd.lvm") &&
      !t.startsWith("rd.luks") &&
      !t.startsWith("rootflags="),
  );
  const extras = EXTRA_ARGS.filter((e) => !kept.includes(e));
  return [`root=${ROOT_DEVICE}`, ...kept, ...extras].join(" ");
}

/**
 * grub.cfg: rewrite the arguments of every `linux`/`linuxefi` line, and point `search` commands
 * that looked for the old root filesystem at the new boot partition.
 */
export function rewriteGrubCfg(
  text: string,
  oldRoot: { uuid?: string; label?: string },
  newBoot: { uuid: string; label: string },
): string {
  const escaped = oldRoot.label?.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const labelRe = escaped ? new RegExp(`(--label|-l|search\\.fs_label)(\\s+)${escaped}(?=\\s|$)`) : undefined;
  return text
    .split("\n")
    .map((line) => {
      const m = /^(\s*)(linux|linuxefi|linux16)(\s+)(\S+)(.*)$/.exec(line);
      if (m) return `${m[1]}${m[2]}${m[3]}${m[4]} ${rewriteCmdline(m[5]!)}`;
      if (!/^\s*search\b/.test(line)) return line;
      let out = oldRoot.uuid ? line.split(oldRoot.uuid).join(newBoot.uuid) : line;
      if (labelRe) out = out.replace(labelRe, `$1$2${newBoot.label}`);
      return out;
    })
    .join("\n");
}

/** BLS entry (/boot/loader/entries/*.conf): the `options` line. */
export function rewriteBlsEntry(text: string): string {
  const lines = text.split("\n");
  let found = false;
  const out = lines.map((line) => {
    const m = /^options(\s+)(.*)$/.exec(line);
    if (!m) return line;
    found = true;
    return `options ${rewriteCmdline(m[2]!)}`;
  });
  if (!found) {
    const end = out.length > 0 && out[out.length - 1] === "" ? out.length - 1 : out.length;
    out.splice(end, 0, `options ${rewriteCmdline("")}`);
  }
  return out.join("\n");
}

/** grubenv is exactly 1024 bytes padded with '#': rewrite `kernelopts=` and keep the size. */
export function rewriteGrubenv(text: string): string {
  const body = text
    .split("\n")
    .filter((l) => l !== "" && !/^#+$/.test(l))
    .map((l) =>
      l.startsWith("kernelopts=") ? `kernelopts=${rewriteCmdline(l.slice("kernelopts=".length))}` : l,
    )
    .join("\n");
  const content = `${body}\n`;
  if (content.length > 1024) throw new FdeError("grubenv would exceed 1024 bytes after rewriting kernelopts");
  return content + "#".repeat(1024 - content.length);
}

/**
 * fstab: the root entry must name our root device with mount options every backend accepts
 * (an overlayfs root rejects ext4 options like errors=remount-ro on remount).
 */
export function rewriteFstab(text: string): string {
  const lines = text.split("\n");
  let found = false;
  const out = lines.map((line) => {
    const f = line.trim().split(/\s+/);
    if (line.trim().startsWith("#") || f.length < 2 || f[1] !== "/") return line;
    found = true;
    return `${ROOT_DEVICE} / auto defaults 0 0`;
  });
  if (!found)
    out.splice(
      out[out.length - 1] === "" ? out.length - 1 : out.length,
      0,
      `${ROOT_DEVICE} / auto defaults 0 0`,
    );
  return out.join("\n");
}
