// congodb.mjs: the stand-in MongoDB of the native stack (layer 8), for machines without one.
//
//   node scripts/congodb.mjs INSTALL_DIR PORT
//
// Debian ships no MongoDB server; CongoDB (inside @push.rocks/smartmongo 2.2.0, installed into
// INSTALL_DIR by `./layers deps`, see scripts/stack.sh mongo-install) speaks MongoDB's wire
// protocol well enough for libmongoc: CRUD, upserts, aggregation, createIndexes as a command.
// Its limits (layer 8's README): unique indexes are not enforced, every find scans every
// document, it knows buildInfo but not buildinfo, no authentication, data in memory only.
// Figures measured on it are not MongoDB's. Stops on SIGTERM/SIGINT.
//
// One fix here: its hello reply carried a `topologyVersion` with a new processId each time, and
// it answered a driver's awaitable hello (streaming monitoring: "answer when the topology
// changes, or after maxAwaitTimeMS") at once. libmongoc's monitor thread then saw a new server on
// every reply and asked again straight away: about 3,600 hellos a second on an idle machine, 60%
// of a core in the stand-in and 50% in the layer's server, with no request at all
// (bench/results/2026-12-02-vm-l8-idle-monitoring). Here the processId stays the same for the
// process's life and an awaitable hello is answered after maxAwaitTimeMS, as a MongoDB whose
// topology does not change answers it. The monitor keeps its connection open, so a stand-in that
// dies is still noticed at once.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, portText] = process.argv.slice(2);
const port = Number(portText);
if (!dir || !Number.isInteger(port) || port < 1 || port > 65535) {
    console.error('usage: node congodb.mjs INSTALL_DIR PORT');
    process.exit(2);
}
const congodb = join(dir, 'node_modules/@push.rocks/smartmongo/dist_ts/congodb');
const { CongoServer } = await import(pathToFileURL(join(congodb, 'index.js')).href);
const { HelloHandler } = await import(pathToFileURL(join(congodb, 'server/handlers/HelloHandler.js')).href);
const hello = HelloHandler.prototype.handle;
let processId = null; // this process's topologyVersion.processId, from its first reply
HelloHandler.prototype.handle = async function (context) {
    const reply = await hello.call(this, context);
    processId ??= reply.topologyVersion.processId;
    reply.topologyVersion.processId = processId;
    const { topologyVersion, maxAwaitTimeMS } = context.command;
    const wait = Number(maxAwaitTimeMS);
    if (topologyVersion !== undefined && Number.isFinite(wait) && wait > 0)
        await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 60000)));
    return reply;
};
const server = new CongoServer({ port, host: '127.0.0.1', storage: 'memory' });
await server.start();
console.log(`CongoDB (stand-in MongoDB) on 127.0.0.1:${port}`);
const stop = async () => {
    await server.stop();
    process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
