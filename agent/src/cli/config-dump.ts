/** `config dump`: print the effective configuration as a cloud-init bundle, as upstream does. */
import { ARCHES, efiBootPath } from "../arch.ts";
import { dumpBundle, type LoadedConfig, loadConfig, parseConfigTexts } from "../config/index.ts";
import { ConfigError, FdeError } from "../errors.ts";
import { escapeText } from "../escape.ts";
import { log, print } from "../log.ts";
import { defineCommand } from "./command.ts";

async function fromInitrd(file: string): Promise<LoadedConfig> {
  const { readInitrdConfig, INITRD_MAX_BYTES } = await import("../config/initrd.ts");
  const { readRegularFile } = await import("../config/read.ts");
  const image = await readRegularFile(file, INITRD_MAX_BYTES, "initrd");
  if (image === undefined) throw new ConfigError(`cannot read ${file}: no such file`);
  const files = await readInitrdConfig(image, file);
  return parseConfigTexts(
    { fde: files["fde.toml"], global: files["global.toml"] },
    `${file}:/etc/cryptpilot`,
  );
}

/**
 * The initrds a disk boots: the UKI's .initrd section (the UKI of either architecture, at
 * EFI/BOOT/BOOTX64.EFI or BOOTAA64.EFI), and every initrd in /boot (upstream follows the boot
 * entries; converted images hold one initrd per kernel, all built with the same config).
 */
async function initrdsOnDisk(path: string): Promise<{ name: string; data: Uint8Array }[]> {
  const { openImage } = await import("../disk/image/open.ts");
  const { diskLayout } = await import("../refvalue/disk-layout.ts");
  const { parsePe } = await import("../refvalue/pe.ts");
  const { espBootFiles } = await import("../refvalue/esp.ts");
  const layout = diskLayout(openImage(path));
  const found: { name: string; data: Uint8Array }[] = [];
  for (const { path: uki } of espBootFiles(layout.esp)) {
    const image = layout.esp.readFile(uki);
    const section = parsePe(image, uki).sections.find((s) => s.name === ".initrd");
    if (section) {
      const { pointerToRawData: at, sizeOfRawData: size } = section;
      if (at + size > image.length)
        throw new ConfigError(`${layout.esp.name}${uki}: its .initrd section lies past the end of the file`);
      found.push({ name: `${layout.esp.name}${uki} (.initrd)`, data: image.subarray(at, at + size) });
    }
  }
  const boot = layout.boot?.tree;
  for (const entry of boot?.list("/") ?? []) {
    if (entry.kind === "file" && /^(initrd|initramfs)/.test(entry.name)) {
      // The name is the image's bytes: escaped before it reaches any message.
      found.push({ name: `${boot!.name}/${escapeText(entry.name)}`, data: boot!.readFile(`/${entry.name}`) });
    }
  }
  return found;
}

/**
 * A reader failure that is not an FdeError (a bounds check the readers missed) still becomes one
 * paragraph naming the image, never a stack trace.
 */
async function readerGuard<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof FdeError) {
      // Messages quote names read from the image: whatever a reader left unescaped is escaped here.
      err.message = err.message.split("\n").map(escapeText).join("\n");
      throw err;
    }
    throw new FdeError(
      `${path}: cannot read the image: it is corrupt or laid out in a way this tool does not understand`,
      {
        cause: err,
      },
    );
  }
}

async function fromDisk(path: string): Promise<LoadedConfig> {
  const { readInitrdConfig } = await import("../config/initrd.ts");
  const initrds = await readerGuard(path, () => initrdsOnDisk(path));
  if (initrds.length === 0) throw new ConfigError(`${path}: no initrd found in /boot or in a UKI on the ESP`);
  for (const { name, data } of initrds) {
    const files = await readInitrdConfig(data, name);
    if (files["fde.toml"] !== undefined) {
      log.debug(`using the configuration in ${name}`);
      return parseConfigTexts(
        { fde: files["fde.toml"], global: files["global.toml"] },
        `${name}:/etc/cryptpilot`,
      );
    }
  }
  throw new ConfigError(
    `${path}: none of its initrds (${initrds.map((i) => i.name).join(", ")}) holds /etc/cryptpilot/fde.toml`,
  );
}

export default defineCommand({
  usage: "[--initrd FILE | --disk PATH]",
  description: `Prints the effective fde.toml and global.toml (defaults filled in) as one TOML bundle behind
upstream's "#cryptpilot-fde-config" header, ready to be used as cloud-init user data. By default
from the configuration directory.`,
  flags: {
    initrd: {
      type: "string",
      value: "FILE",
      help: "read /etc/cryptpilot/ from an initrd image (cpio; uncompressed, gzip, zstd, lz4 -l)",
    },
    disk: {
      type: "string",
      value: "PATH",
      help: `read it from the initrds of a disk image or block device (raw or qcow2; the .initrd of the UKI at ${ARCHES.map((a) => efiBootPath(a).slice(1)).join(" or ")}, or the initrds in /boot), without root`,
    },
  },
  async run({ values, globals, usageError }) {
    if (values.disk !== undefined && values.initrd !== undefined) {
      throw usageError("give --disk or --initrd, not both");
    }
    const config =
      values.disk !== undefined
        ? await fromDisk(values.disk)
        : values.initrd !== undefined
          ? await fromInitrd(values.initrd)
          : await loadConfig(globals.configDir);
    if (!config.fde) {
      const source = values.initrd === undefined ? globals.configDir : `${values.initrd}:/etc/cryptpilot`;
      throw new ConfigError(`${source}/fde.toml does not exist; there is no FDE configuration to dump`);
    }
    // Upstream's dump reads the booted system's initrd by default; say which source this one is.
    const used =
      values.disk ?? (values.initrd !== undefined ? `${values.initrd}:/etc/cryptpilot` : globals.configDir);
    log.info(`config dump: the configuration in ${used} (--disk or --initrd for an image's initrd)`);
    print(dumpBundle(config).replace(/\n$/, ""));
    return 0;
  },
});
