// One process that serves its own clients and is itself a client of
// another server (a hub): its database's network is the union of the two,
// a group that follows the Server's clients as they come and go.
import { once } from 'node:events'
import database from 'mytosis'
import { ConnectionGroup, Server, Socket } from 'mytosis-websocket'

const hub = new Server({ port: 0, host: '127.0.0.1' }) // stands for a server elsewhere
const server = new Server({ port: 0, host: '127.0.0.1' }) // in production: new Server(8080)
const [{ port: hubPort }, { port }] = await Promise.all([hub.ready, server.ready])

const upstream = new Socket(`ws://127.0.0.1:${hubPort}`)
const db = database({ network: server.union(ConnectionGroup.ensure(upstream)) })

// One client of ours; once it and the hub are connected, a write reaches both.
const client = new Socket(`ws://127.0.0.1:${port}`)
await Promise.all([once(upstream, 'open'), once(server, 'add')])
const received = (stream) => new Promise((resolve) => stream.forEach(resolve))
const atHub = received(hub.messages)
const atClient = received(client.messages)
await db.write('greeting', { text: 'hello' })
console.log(`hub got ${JSON.stringify(await atHub)}`)
console.log(`client got ${JSON.stringify(await atClient)}`)

upstream.close()
client.close()
await Promise.all([hub.close(), server.close()])
