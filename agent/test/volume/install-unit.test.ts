/** convert installs cryptpilot-volumes.service into the guest root, enabled (installAgent). */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { installAgent } from "../../src/convert/guest.ts";

const dir = mkdtempSync(join(tmpdir(), "vol-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the unit from hooks/ lands in /usr/lib/systemd/system and is wanted by multi-user.target", async () => {
  const unit = readFileSync(resolve(import.meta.dir, "../../../hooks/cryptpilot-volumes.service"), "utf8");
  const agent = join(dir, "agent");
  writeFileSync(agent, "#!/bin/sh\n");
  const root = join(dir, "root");
  const assets = { moduleFiles: { "cryptpilot-volumes.service": unit }, agentBinary: agent };
  await installAgent(root, assets);
  await installAgent(root, assets); // a second convert run over the same tree is fine
  expect(readFileSync(join(root, "usr/lib/systemd/system/cryptpilot-volumes.service"), "utf8")).toBe(unit);
  expect(
    readlinkSync(join(root, "etc/systemd/system/multi-user.target.wants/cryptpilot-volumes.service")),
  ).toBe("/usr/lib/systemd/system/cryptpilot-volumes.service");
  expect(unit).toContain("ExecStart=/usr/bin/cryptpilot-fde volume open --auto");
});
