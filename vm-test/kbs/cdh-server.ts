/**
 * A confidential-data-hub stand-in for `cdh_type = "daemon"` tests: speaks ttrpc on a unix socket
 * and serves `api.GetResourceService/GetResource` from a fixed resource map, as a CDH configured
 * with the offline_fs_kbc does. Unknown methods get UNIMPLEMENTED (12), missing resources
 * UNKNOWN (2) with CDH's wording.
 */
import { createServer, type Server } from "node:net";
import {
  decodeField1,
  decodeFrames,
  decodeRequest,
  encodeField1,
  encodeFrame,
  encodeResponse,
  MESSAGE_REQUEST,
  MESSAGE_RESPONSE,
} from "../../agent/src/kbs/ttrpc.ts";

export interface CdhServer {
  socket: string;
  /** Resource paths asked for, in order. */
  requests: string[];
  stop(): Promise<void>;
}

export async function startCdh(socket: string, resources: Record<string, Uint8Array>): Promise<CdhServer> {
  const requests: string[] = [];
  const server: Server = createServer((conn) => {
    let buf: Uint8Array = new Uint8Array();
    conn.on("data", (chunk: Buffer) => {
      const joined = new Uint8Array(buf.length + chunk.length);
      joined.set(buf);
      joined.set(chunk, buf.length);
      const { frames, rest } = decodeFrames(joined);
      buf = rest;
      for (const f of frames.filter((x) => x.type === MESSAGE_REQUEST)) {
        const req = decodeRequest(f.payload);
        let reply: Uint8Array;
        if (req.service !== "api.GetResourceService" || req.method !== "GetResource") {
          reply = encodeResponse({
            code: 12,
            message: `${req.service}/${req.method} is not implemented`,
            payload: new Uint8Array(),
          });
        } else {
          const uri = new TextDecoder().decode(decodeField1(req.payload));
          requests.push(uri);
          const data = resources[uri.replace(/^kbs:\/\/[^/]*\//, "")];
          reply = data
            ? encodeResponse({ code: 0, message: "", payload: encodeField1(data) })
            : encodeResponse({
                code: 2,
                message: `[CDH] [ERROR]: get resource failed: ${uri} not found`,
                payload: new Uint8Array(),
              });
        }
        conn.write(encodeFrame({ streamId: f.streamId, type: MESSAGE_RESPONSE, payload: reply }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return { socket, requests, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}
