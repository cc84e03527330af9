// A Server attached to an express app's http server: one port for the
// app's routes and for WebSocket upgrades to /ws.
import express from 'express'
import { Server, Socket } from 'mytosis-websocket'

const app = express()
app.get('/health', (req, res) => res.send('ok'))
const httpServer = app.listen(0, '127.0.0.1') // in production: app.listen(8080)
const server = new Server({ server: httpServer, path: '/ws' })

server.messages.forEach((message, connection) => connection.send({ echo: message }))

const { port } = await server.ready // once the http server listens
const health = await fetch(`http://127.0.0.1:${port}/health`)
console.log(`GET /health: ${health.status} ${await health.text()}`)

// A client does one round trip, then everything closes and the process exits.
const client = new Socket(`ws://127.0.0.1:${port}/ws`)
client.send({ hello: 'express' })
const [answer] = await new Promise((resolve) => client.messages.forEach((...args) => resolve(args)))
console.log(`client got ${JSON.stringify(answer)}`)
client.close()
await server.close() // closes the WebSocket connections, never the http server
await new Promise((resolve) => httpServer.close(resolve))
