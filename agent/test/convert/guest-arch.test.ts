/**
 * convert's architecture check (convert/guest-arch.ts checkGuestArch) on guest roots made here as
 * directories: which agent it compares with the guest (convert's own, or the image's package's),
 * what it tells the user on a mismatch, and when it asks binfmt_misc for qemu-user. The whole
 * convert, refusing before it writes, is in convert.test.ts.
 */
import { afterAll, describe, expect, spyOn, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AMD64, ARM64, type Arch } from "../../src/arch.ts";
import { MODULE_FILES } from "../../src/convert/assets.ts";
import { AGENT_PATH, MODULE_DIR } from "../../src/convert/guest.ts";
import { checkGuestArch } from "../../src/convert/guest-arch.ts";
import { DPKG_STATUS } from "../../src/convert/guest-package.ts";
import { FdeError } from "../../src/errors.ts";
import { log } from "../../src/log.ts";
import { VERSION } from "../../src/version.ts";
import { tempDir } from "../../testkit/sh.ts";
import { elfHeader, elfStandIn } from "./fixture.ts";

const work = tempDir("guest-arch");
afterAll(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
/** A guest root of ARCH (its systemd's ELF header), with the cryptpilot-fde package of PKG installed. */
function guest(arch: Arch, pkg?: Arch): string {
  const root = join(work, `root${n++}`);
  mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
  writeFileSync(join(root, "usr/lib/systemd/systemd"), elfHeader(arch));
  if (pkg) {
    mkdirSync(join(root, "var/lib/dpkg"), { recursive: true });
    writeFileSync(
      join(root, DPKG_STATUS),
      `Package: cryptpilot-fde\nStatus: install ok installed\nVersion: ${VERSION}\nArchitecture: ${pkg.debian}\n`,
    );
    mkdirSync(join(root, "usr/bin"), { recursive: true });
    writeFileSync(join(root, AGENT_PATH), elfHeader(pkg));
    mkdirSync(join(root, MODULE_DIR), { recursive: true });
    for (const f of Object.keys(MODULE_FILES)) writeFileSync(join(root, MODULE_DIR, f), "");
  }
  return root;
}

const ownAgent = (arch: Arch) => ({ moduleFiles: {}, agentBinary: elfStandIn(work, arch) });
/** binfmt_misc with qemu-aarch64 registered as qemu-user-static does it. */
const binfmtOk = join(work, "binfmt-ok");
mkdirSync(binfmtOk);
writeFileSync(
  join(binfmtOk, "qemu-aarch64"),
  "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\n",
);
const x86Host = { arch: AMD64, binfmtDir: binfmtOk };
/** A host whose binfmt_misc must not be read: the check fails if it is. */
const noBinfmt = (arch: Arch) => ({ arch, binfmtDir: join(work, "no-such-binfmt") });

async function refused(p: Promise<unknown>): Promise<FdeError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FdeError);
  return err as FdeError;
}

describe("the agent compared with the guest", () => {
  test("an x86-64 convert of an arm64 image with the arm64 package: the package's agent counts", async () => {
    const info = spyOn(log, "info");
    try {
      expect(await checkGuestArch(guest(ARM64, ARM64), ownAgent(AMD64), x86Host)).toBe(ARM64);
      expect(info.mock.calls.map((c) => String(c[0]))).toEqual([
        "  guest architecture: arm64 (aarch64) (its /usr/lib/systemd/systemd); its dracut runs under qemu-aarch64 (binfmt_misc)",
      ]);
    } finally {
      info.mockRestore();
    }
  });

  test("the image's package of the wrong architecture: install the right package", async () => {
    const err = await refused(checkGuestArch(guest(ARM64, AMD64), ownAgent(ARM64), x86Host));
    expect(err.message).toBe(
      "the guest image is arm64 (aarch64) (its /usr/lib/systemd/systemd), but the image's cryptpilot-fde package's /usr/bin/cryptpilot-fde is amd64 (x86_64): the converted image could not run it at boot",
    );
    expect(err.hint).toContain(`make deb ARCH=arm64 builds dist/cryptpilot-fde_${VERSION}_arm64.deb`);
  });

  test("an arm64 agent for an x86-64 image: install the amd64 package, or use the amd64 build", async () => {
    const agent = ownAgent(ARM64);
    const err = await refused(checkGuestArch(guest(AMD64), agent, noBinfmt(AMD64)));
    expect(err.message).toContain(`this convert's agent ${agent.agentBinary} is arm64 (aarch64)`);
    expect(err.hint).toContain("make deb ARCH=amd64");
    expect(err.hint).toContain("make build ARCH=amd64");
  });

  test("guest and host of one architecture: binfmt_misc is not consulted", async () => {
    expect(await checkGuestArch(guest(ARM64), ownAgent(ARM64), noBinfmt(ARM64))).toBe(ARM64);
    expect(await checkGuestArch(guest(AMD64), ownAgent(AMD64), noBinfmt(AMD64))).toBe(AMD64);
  });

  test("an arm64 host converting an x86-64 guest needs qemu-x86_64", async () => {
    const err = await refused(checkGuestArch(guest(AMD64), ownAgent(AMD64), noBinfmt(ARM64)));
    expect(err.message).toContain("qemu-x86_64 does not exist");
  });
});
