// PostGraphile on grafserv's Node adaptor, one process, with ./graphile.config.mjs.
// Prints "peer: listening on PORT" once it answers (bench/peer.py waits for it).
import { createServer } from "node:http";

import { postgraphile } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/node";

import preset from "./graphile.config.mjs";

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (error) => {
  console.error(error);
  process.exit(1);
});
await serv.addTo(server);
await pgl.getSchema(); // build the schema before the first request, not during it
const { host, port } = preset.grafserv;
server.listen(port, host, () => console.log(`peer: listening on ${port}`));
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    pgl.release().finally(() => process.exit(0));
  });
}
