/**
 * The guest's own cryptpilot-fde Debian package (`make deb`, docs/install.md). An image pipeline
 * that installed it has chosen the agent and dracut module its image boots with, and dpkg owns
 * those files: convert then uses them as they are instead of writing its own copies over them,
 * and says which it used. The image's package must be fully installed and of this convert's
 * version, since convert writes the disk layout and metadata that agent reads at boot; anything
 * else is refused before the disk is changed further (no silent fallback to either copy).
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";
import { VERSION } from "../version.ts";
import { MODULE_FILES } from "./assets.ts";
import { AGENT_PATH, type Assets, enableVolumesUnit, installAgent, MODULE_DIR } from "./guest.ts";

/** The package name (packaging/deb/control.in). */
export const PACKAGE_NAME = "cryptpilot-fde";
/** dpkg's database of installed packages, relative to the guest root. */
export const DPKG_STATUS = "var/lib/dpkg/status";
/**
 * Upper bound for the status file read into memory: a large Debian system's is a few MiB (about
 * 1 KiB per package); a bigger one is not a status file this code should trust its memory to.
 */
export const MAX_DPKG_STATUS_BYTES = 64 * 1024 * 1024;

/** The package's stanza in dpkg's status: its state word (installed, unpacked, ...) and version. */
export interface PackageState {
  /** The third word of Status: (installed, config-files, half-installed, unpacked, ...). */
  state: string;
  version: string;
}

/** Pure: NAME's stanza in the text of a dpkg status file, or undefined when it has none. */
export function packageState(statusText: string, name = PACKAGE_NAME): PackageState | undefined {
  for (const stanza of statusText.split(/\n\s*\n/)) {
    const field = (f: string) => new RegExp(`^${f}:[ \\t]*(.*?)[ \\t]*$`, "m").exec(stanza)?.[1];
    if (field("Package") !== name) continue;
    return { state: field("Status")?.split(/\s+/)[2] ?? "", version: field("Version") ?? "" };
  }
  return undefined;
}

/** Which agent and module convert put into the image. */
export type AgentSource = { from: "package"; version: string } | { from: "convert"; version: string };

/**
 * What the guest root at ROOT has: "package" when its cryptpilot-fde package is installed (and
 * complete, of this version), "convert" when it has none (or only its leftover conffiles).
 * Throws an FdeError for a package convert must not use or overwrite.
 */
export async function guestAgentSource(root: string): Promise<AgentSource> {
  const statusPath = join(root, DPKG_STATUS);
  if (!existsSync(statusPath)) return { from: "convert", version: VERSION };
  const size = (await stat(statusPath)).size;
  if (size > MAX_DPKG_STATUS_BYTES)
    throw new FdeError(
      `the image's /${DPKG_STATUS} is ${size} bytes, over the ${MAX_DPKG_STATUS_BYTES} this convert reads`,
    );
  const pkg = packageState(await readFile(statusPath, "utf8"));
  if (pkg === undefined || pkg.state === "not-installed" || pkg.state === "config-files")
    return { from: "convert", version: VERSION };
  if (pkg.state !== "installed")
    throw new FdeError(
      `the image's ${PACKAGE_NAME} package ${pkg.version} is not fully installed (dpkg state "${pkg.state}")`,
      {
        hint: "finish or undo its installation in the image (dpkg --configure -a, or dpkg --purge) and convert again",
      },
    );
  if (pkg.version !== VERSION)
    throw new FdeError(
      `the image has the ${PACKAGE_NAME} package ${pkg.version}, but this convert is ${VERSION}: the image's agent would boot a layout written by another version`,
      {
        hint: `convert with cryptpilot-fde ${pkg.version} (the package's own /usr/bin/cryptpilot-fde), or install the ${VERSION} package into the image`,
      },
    );
  const needed = [AGENT_PATH, ...Object.keys(MODULE_FILES).map((f) => `${MODULE_DIR}/${f}`)];
  const absent = needed.filter((p) => !existsSync(join(root, p)));
  if (absent.length > 0)
    throw new FdeError(
      `the image's ${PACKAGE_NAME} package ${pkg.version} is installed but /${absent[0]} is missing${absent.length > 1 ? ` (and ${absent.length - 1} more of its files)` : ""}`,
      { hint: `reinstall it in the image (apt-get install --reinstall ${PACKAGE_NAME}) and convert again` },
    );
  return { from: "package", version: pkg.version };
}

/**
 * Puts the agent and dracut module into the guest at ROOT: the image's package when it has one
 * (then only the data-volume unit is enabled and /etc/cryptpilot made, as for convert's own copy),
 * else convert's own ASSETS. Logs which.
 */
export async function installOrUseGuestPackage(root: string, assets: Assets): Promise<AgentSource> {
  const source = await guestAgentSource(root);
  if (source.from === "package") {
    await mkdir(join(root, "etc/cryptpilot"), { recursive: true });
    await enableVolumesUnit(root);
    log.info(
      `  agent and dracut module: the image's ${PACKAGE_NAME} package ${source.version} (/${AGENT_PATH}, /${MODULE_DIR})`,
    );
  } else {
    await installAgent(root, assets);
    log.info(`  agent and dracut module: this convert's own (${source.version}), installed into the image`);
  }
  return source;
}
