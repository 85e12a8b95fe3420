/**
 * Intel TDX evidence: a TD quote from configfs-tsm with the runtime-data digest zero-padded to
 * 64 bytes as REPORTDATA, plus the CCEL event log. configfs-tsm (Linux 6.7+) is the only mainline
 * interface that gives a quote; /dev/tdx_guest alone does not (tdx-guest.ts). JSON shape: trustee's TdxEvidence
 * `{cc_eventlog: base64 | null, quote: base64}`; cc_eventlog is the CCEL followed by the AAEL
 * records of runtime measurements (measure/).
 */
import { FdeError } from "../errors.ts";
import { withAael } from "../measure/evidence.ts";
import { RECORDS_PATH, readRecords } from "../measure/records.ts";
import { readCcel } from "./ccel.ts";
import { attestInterface, probeInterfaces, TEE_DRIVERS } from "./platform.ts";
import { TDX_GUEST_DEVICE, tdxQuoteUnavailable } from "./tdx-guest.ts";
import { type TsmFs, tsmReport } from "./tsm.ts";
import type { Attester, HostPaths } from "./types.ts";

export const TDX_PROVIDER = TEE_DRIVERS.tdx.tsmProvider;

export interface TdxQuoteFields {
  version: number;
  mrTd: Uint8Array;
  mrConfigId: Uint8Array;
  rtmr: Uint8Array[];
  reportData: Uint8Array;
}

/**
 * The TD report body fields a relying party checks. v4 quotes have the body right after the
 * 48-byte header; v5 quotes insert a body type (u16) and size (u32) first.
 */
export function parseTdxQuote(quote: Uint8Array): TdxQuoteFields {
  if (quote.length < 48) throw new FdeError(`TDX quote too short (${quote.length} bytes)`);
  const view = new DataView(quote.buffer, quote.byteOffset, quote.byteLength);
  const version = view.getUint16(0, true);
  const teeType = view.getUint32(4, true);
  if (teeType !== 0x81) throw new FdeError(`not a TDX quote (tee type 0x${teeType.toString(16)})`);
  let body: number;
  if (version === 4) body = 48;
  else if (version === 5) body = 54;
  else throw new FdeError(`unsupported TDX quote version ${version} (expected 4 or 5)`);
  if (quote.length < body + 584) throw new FdeError(`TDX quote too short (${quote.length} bytes)`);
  const field = (offset: number, size: number) => quote.subarray(body + offset, body + offset + size);
  return {
    version,
    mrTd: field(136, 48),
    mrConfigId: field(184, 48),
    rtmr: [0, 1, 2, 3].map((i) => field(328 + 48 * i, 48)),
    reportData: field(520, 64),
  };
}

export function padReportData(digest: Uint8Array, size = 64): Uint8Array {
  const out = new Uint8Array(size);
  out.set(digest.subarray(0, size));
  return out;
}

export function createTdxAttester(paths: HostPaths, fs?: TsmFs): Attester {
  return {
    tee: "tdx",
    async evidence(digest: Uint8Array) {
      const reportData = padReportData(digest);
      // Without configfs-tsm, /dev/tdx_guest gives no quote (tdx-guest.ts): say so rather than
      // report configfs-tsm as merely missing.
      const device = `${paths.sysRoot}${TDX_GUEST_DEVICE}`;
      if (attestInterface("tdx", await probeInterfaces(paths, fs)) === "device") {
        throw tdxQuoteUnavailable(device, paths.tsmRoot);
      }
      const { outblob } = await tsmReport({
        root: paths.tsmRoot,
        fs,
        provider: TDX_PROVIDER,
        inblob: reportData,
      });
      // The quote must carry what we asked for; anything else would be rejected by the verifier
      // with a far less helpful message.
      if (!Buffer.from(parseTdxQuote(outblob).reportData).equals(reportData)) {
        throw new FdeError("TDX quote from configfs-tsm does not carry the requested REPORTDATA");
      }
      // The firmware log plus this boot's AAEL records (measure/), which RTMR3 in the quote covers.
      const eventlog = withAael(
        readCcel(paths.sysRoot),
        readRecords(`${paths.sysRoot}${RECORDS_PATH}`),
        "sha384",
      );
      return {
        cc_eventlog: eventlog ? Buffer.from(eventlog).toString("base64") : null,
        quote: Buffer.from(outblob).toString("base64"),
      };
    },
  };
}
