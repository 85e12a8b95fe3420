import { onGuest } from "../lib/scenario.ts";
import kbsHttps from "./kbs-https.ts";

export default onGuest("trixie", kbsHttps);
