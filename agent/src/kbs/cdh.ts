/**
 * cdh_type = "daemon": ask a running confidential-data-hub for the resource over its ttrpc
 * socket (`api.GetResourceService/GetResource`, ResourcePath = "kbs:///repo/type/tag"). The CDH
 * does the attestation with its own attestation agent; we only carry the bytes.
 */
import { connect } from "node:net";
import { KeyProviderError } from "../errors.ts";
import {
  decodeField1,
  decodeFrames,
  decodeResponse,
  encodeField1,
  encodeFrame,
  encodeRequest,
  MESSAGE_REQUEST,
  MESSAGE_RESPONSE,
} from "./ttrpc.ts";

export const CDH_SERVICE = "api.GetResourceService";
export const CDH_METHOD = "GetResource";

function socketPath(uri: string): string {
  return uri.startsWith("unix://") ? uri.slice("unix://".length) : uri;
}

export async function getResourceFromCdh(
  socket: string,
  path: string,
  timeoutMs: number,
): Promise<Uint8Array> {
  const file = socketPath(socket);
  const uri = `kbs:///${path}`;
  const fail = (message: string, cause?: unknown) =>
    new KeyProviderError("kbs", `confidential-data-hub at ${file}: GetResource ${uri} ${message}`, {
      cause,
      hint: "is confidential-data-hub running with a KBC configured for this KBS (cdh_socket)?",
    });
  const request = encodeFrame({
    streamId: 1,
    type: MESSAGE_REQUEST,
    payload: encodeRequest({
      service: CDH_SERVICE,
      method: CDH_METHOD,
      payload: encodeField1(uri),
      timeoutNano: BigInt(timeoutMs) * 1_000_000n,
    }),
  });
  const frame = await new Promise<Uint8Array>((resolve, reject) => {
    const conn = connect(file);
    let buf: Uint8Array = new Uint8Array();
    const timer = setTimeout(() => {
      conn.destroy();
      reject(fail(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (err?: Error, payload?: Uint8Array) => {
      clearTimeout(timer);
      conn.destroy();
      if (err) reject(err);
      else resolve(payload!);
    };
    conn.on("connect", () => conn.write(request));
    conn.on("error", (e) => done(fail(`failed: ${e.message}`, e)));
    conn.on("end", () => done(fail("failed: the daemon closed the connection without answering")));
    conn.on("data", (chunk: Buffer) => {
      const joined = new Uint8Array(buf.length + chunk.length);
      joined.set(buf);
      joined.set(chunk, buf.length);
      try {
        const { frames, rest } = decodeFrames(joined);
        buf = rest;
        const reply = frames.find((f) => f.streamId === 1 && f.type === MESSAGE_RESPONSE);
        if (reply) done(undefined, reply.payload);
      } catch (e) {
        done(fail(`failed: ${(e as Error).message}`, e));
      }
    });
  });
  const response = decodeResponse(frame);
  if (response.code !== 0) throw fail(`failed: status ${response.code}: ${response.message}`);
  return decodeField1(response.payload);
}
