/**
 * convert and the image's own cryptpilot-fde package (agent/src/convert/guest-package.ts), on fake
 * guest roots: with the package installed (this version, complete) convert leaves its agent and
 * module alone and says so; without it (or with only its conffiles left) convert installs its
 * own; a package of another version, half installed, missing files, or a status file too big to
 * read are refused before anything is written.
 */
import { afterAll, afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MODULE_FILES } from "../../src/convert/assets.ts";
import { AGENT_PATH, type Assets, MODULE_DIR } from "../../src/convert/guest.ts";
import {
  DPKG_STATUS,
  guestAgentSource,
  installOrUseGuestPackage,
  MAX_DPKG_STATUS_BYTES,
  packageState,
} from "../../src/convert/guest-package.ts";
import { FdeError } from "../../src/errors.ts";
import { VERSION } from "../../src/version.ts";
import { tempDir } from "../../testkit/sh.ts";

const work = tempDir("guest-package");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const IMAGE_AGENT = "the image's packaged agent\n";
const CONVERT_AGENT = join(work, "convert-agent");
writeFileSync(CONVERT_AGENT, "convert's own agent\n");
const assets: Assets = { moduleFiles: MODULE_FILES, agentBinary: CONVERT_AGENT };

function stanza(name: string, status: string, version: string): string {
  return `Package: ${name}\nStatus: ${status}\nPriority: optional\nVersion: ${version}\nDescription: x\n two lines\n`;
}

let n = 0;
/** A fake guest root: dpkg status STANZAS, and the package's files when `files` is set. */
function guest(stanzas: string[] | undefined, files = false): string {
  const root = join(work, `root${n++}`);
  mkdirSync(root, { recursive: true });
  if (stanzas !== undefined) {
    mkdirSync(join(root, "var/lib/dpkg"), { recursive: true });
    writeFileSync(join(root, DPKG_STATUS), stanzas.join("\n"));
  }
  if (files) {
    mkdirSync(join(root, "usr/bin"), { recursive: true });
    writeFileSync(join(root, AGENT_PATH), IMAGE_AGENT);
    mkdirSync(join(root, MODULE_DIR), { recursive: true });
    for (const f of Object.keys(MODULE_FILES)) writeFileSync(join(root, MODULE_DIR, f), `packaged ${f}\n`);
    mkdirSync(join(root, "usr/lib/systemd/system"), { recursive: true });
    writeFileSync(join(root, "usr/lib/systemd/system/cryptpilot-volumes.service"), "packaged unit\n");
  }
  return root;
}

const OTHERS = [
  stanza("cryptpilot-fde-host", "install ok installed", "9.9"),
  stanza("bash", "install ok installed", "5.2"),
];
const installed = (version = VERSION) => [
  ...OTHERS,
  stanza("cryptpilot-fde", "install ok installed", version),
];

let logged: string[];
let spy: ReturnType<typeof spyOn>;
beforeEach(() => {
  logged = [];
  spy = spyOn(console, "error").mockImplementation((_f: unknown, line: unknown) => {
    logged.push(String(line));
  });
});
afterEach(() => spy.mockRestore());

describe("packageState (dpkg status text)", () => {
  test("finds the package's own stanza, not one whose name only starts the same", () => {
    expect(packageState(installed("1.2.3").join("\n"))).toEqual({ state: "installed", version: "1.2.3" });
    expect(packageState(OTHERS.join("\n"))).toBeUndefined();
    expect(packageState(stanza("cryptpilot-fde", "deinstall ok config-files", "0.1"))).toEqual({
      state: "config-files",
      version: "0.1",
    });
  });
});

describe("convert with the image's package", () => {
  test("installed, this version, complete: its files are used as they are; the volume unit is enabled; the log says so", async () => {
    const root = guest(installed(), true);
    expect(await installOrUseGuestPackage(root, assets)).toEqual({ from: "package", version: VERSION });
    expect(readFileSync(join(root, AGENT_PATH), "utf8")).toBe(IMAGE_AGENT);
    expect(readFileSync(join(root, MODULE_DIR, "module-setup.sh"), "utf8")).toBe(
      "packaged module-setup.sh\n",
    );
    expect(readFileSync(join(root, "usr/lib/systemd/system/cryptpilot-volumes.service"), "utf8")).toBe(
      "packaged unit\n",
    );
    expect(
      readlinkSync(join(root, "etc/systemd/system/multi-user.target.wants/cryptpilot-volumes.service")),
    ).toBe("/usr/lib/systemd/system/cryptpilot-volumes.service");
    expect(existsSync(join(root, "etc/cryptpilot"))).toBe(true);
    expect(logged.join("\n")).toContain(`the image's cryptpilot-fde package ${VERSION}`);
  });

  test("no dpkg status, no package, or only its conffiles left: convert installs its own and says so", async () => {
    for (const stanzas of [
      undefined,
      OTHERS,
      [...OTHERS, stanza("cryptpilot-fde", "deinstall ok config-files", "0.0.1")],
    ]) {
      const root = guest(stanzas);
      logged = [];
      expect(await installOrUseGuestPackage(root, assets)).toEqual({ from: "convert", version: VERSION });
      expect(readFileSync(join(root, AGENT_PATH), "utf8")).toBe("convert's own agent\n");
      expect(readFileSync(join(root, MODULE_DIR, "module-setup.sh"), "utf8")).toBe(
        MODULE_FILES["module-setup.sh"]!,
      );
      expect(logged.join("\n")).toContain(`this convert's own (${VERSION})`);
    }
  });

  /** Refused with an FdeError containing TEXT, and nothing written into the guest. */
  async function refused(root: string, text: string): Promise<void> {
    const agentBefore = existsSync(join(root, AGENT_PATH))
      ? readFileSync(join(root, AGENT_PATH), "utf8")
      : null;
    const err = await installOrUseGuestPackage(root, assets).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FdeError);
    expect((err as Error).message).toContain(text);
    expect(existsSync(join(root, AGENT_PATH)) ? readFileSync(join(root, AGENT_PATH), "utf8") : null).toBe(
      agentBefore,
    );
    expect(existsSync(join(root, "etc/systemd/system/multi-user.target.wants"))).toBe(false);
  }

  test("another version is refused, naming both (the image's agent would boot a layout it may not read)", async () => {
    await refused(guest(installed("0.0.9"), true), `package 0.0.9, but this convert is ${VERSION}`);
  });

  test("a half-installed or unpacked package is refused", async () => {
    await refused(
      guest([stanza("cryptpilot-fde", "install reinstreq half-installed", VERSION)], true),
      "not fully installed",
    );
    await refused(
      guest([stanza("cryptpilot-fde", "install ok unpacked", VERSION)], true),
      'dpkg state "unpacked"',
    );
  });

  test("an installed package with a file missing is refused, naming the file", async () => {
    const root = guest(installed(), true);
    rmSync(join(root, MODULE_DIR, "lvm.conf"));
    await refused(root, `/${MODULE_DIR}/lvm.conf is missing`);
  });

  test("a dpkg status file over the read limit is refused without reading it", async () => {
    const root = guest([]);
    const status = join(root, DPKG_STATUS);
    writeFileSync(status, "");
    Bun.spawnSync(["truncate", "-s", String(MAX_DPKG_STATUS_BYTES + 1), status]);
    expect(lstatSync(status).size).toBe(MAX_DPKG_STATUS_BYTES + 1);
    const rss = process.memoryUsage.rss();
    await refused(root, "over the");
    expect(process.memoryUsage.rss() - rss).toBeLessThan(32 * 1024 * 1024);
    await expect(guestAgentSource(root)).rejects.toThrow(String(MAX_DPKG_STATUS_BYTES));
  });
});
