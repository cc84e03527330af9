// A Mytosis database served over WebSockets: the Server is the database's
// network, and every client that connects to it is one of its connections.
import database from 'mytosis'
import { Server, Socket } from 'mytosis-websocket'

const server = new Server({ port: 0, host: '127.0.0.1' }) // port 0 picks a free port; in production: new Server(8080)
const db = database({ network: server })

// What Mytosis sends to its network reaches every connected client.
server.on('add', () => db.write('greeting', { text: 'hello' }))
server.messages.forEach(async (message, connection) => {
  console.log(`server got ${JSON.stringify(message)} from a ${connection.type} connection`)
  await server.close()
})

// A client, as a browser page connects (see the next example). After one
// round trip both close, and the process exits.
const { port } = await server.ready
const client = new Socket(`ws://127.0.0.1:${port}`)
client.messages.forEach((message) => {
  console.log(`client got ${JSON.stringify(message)}`)
  client.send({ thanks: message.key })
  client.close()
})
