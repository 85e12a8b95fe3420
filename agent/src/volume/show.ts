/**
 * `volume show`: one row per volume. The JSON keeps upstream cryptpilot-crypt's field names and
 * status names (volume, volume_path, underlay_device, key_provider, extra_options, status,
 * description) and adds config_file and mount. Provider options are left out: they can hold
 * secrets (kms client_key_password, tpm2 pin).
 */
import type { VolumeConfig } from "../config/volume.ts";
import { type DeviceFacts, mapperPath, probeDevice, type VolumeStatus, volumeStatus } from "./state.ts";

export interface ShowRow extends VolumeStatus {
  volume: string;
  volume_path: string;
  underlay_device: string;
  key_provider: string;
  /** open_in_initrd is ours: only present when true, so upstream's shape stays as it was. */
  extra_options: { auto_open: boolean; open_in_initrd?: true; makefs?: string; integrity: boolean };
  mount?: { mountpoint: string; options: string };
  config_file: string;
}

/** otp is the one provider whose every key is fresh (KeyProvider.temporary), known without loading it. */
export const isTemporary = (vol: VolumeConfig) => vol.encrypt.type === "otp";

export function showRow(vol: VolumeConfig, facts: DeviceFacts): ShowRow {
  const row: ShowRow = {
    volume: vol.volume,
    volume_path: mapperPath(vol.volume),
    underlay_device: vol.dev,
    key_provider: vol.encrypt.type,
    extra_options: {
      auto_open: vol.autoOpen,
      ...(vol.openInInitrd ? { open_in_initrd: true as const } : {}),
      ...(vol.makefs === undefined ? {} : { makefs: vol.makefs }),
      integrity: vol.integrity,
    },
    ...volumeStatus(facts, vol.dev, isTemporary(vol)),
    config_file: vol.file,
  };
  if (vol.mount) row.mount = { ...vol.mount };
  return row;
}

export async function showRows(volumes: VolumeConfig[]): Promise<ShowRow[]> {
  const rows: ShowRow[] = [];
  for (const vol of volumes) rows.push(showRow(vol, await probeDevice(vol.volume, vol.dev)));
  return rows;
}

const HEADER = ["VOLUME", "DEVICE", "PROVIDER", "STATUS", "AUTO-OPEN", "MOUNT"];

/** A plain-text table (no colours or box characters: it ends up in journals and serial logs). */
export function renderTable(rows: ShowRow[]): string {
  const cells = rows.map((r) => [
    r.volume,
    r.underlay_device,
    r.key_provider,
    r.status,
    r.extra_options.open_in_initrd ? "initrd" : r.extra_options.auto_open ? "yes" : "no",
    r.mount?.mountpoint ?? "-",
  ]);
  const widths = HEADER.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c
      .map((s, i) => s.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  const notes = rows
    .filter((r) => r.status !== "Opened" && r.status !== "ReadyToOpen")
    .map((r) => `${r.volume}: ${r.description}`);
  return [line(HEADER), ...cells.map(line), ...(notes.length > 0 ? ["", ...notes] : [])].join("\n");
}
