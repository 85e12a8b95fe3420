import { kbsHttpsScenario } from "./kbs-https.ts";

export default kbsHttpsScenario("trixie");
