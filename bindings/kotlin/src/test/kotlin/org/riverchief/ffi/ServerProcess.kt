package org.riverchief.ffi

import java.io.File
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.security.SecureRandom
import java.time.Duration
import java.util.Collections
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit

/**
 * A real `riverchief-server serve --demo` on 127.0.0.1 (a port the OS picks), with a fresh data
 * directory and one random password for every demo user. Its stdout is drained for as long as it
 * runs (the `listening on` line gives the port); its stderr (the logs) goes to a file beside the
 * data directory, kept for a failed run.
 */
class ServerProcess private constructor(
    private val process: Process,
    val port: Int,
    val password: String,
    val logFile: File,
) : AutoCloseable {
    val baseUrl get() = "http://127.0.0.1:$port"

    val alive get() = process.isAlive

    /** Ends the server: SIGTERM, then SIGKILL if it takes longer than 10 s. */
    override fun close() {
        if (!process.isAlive) return
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly()
            process.waitFor(10, TimeUnit.SECONDS)
        }
    }

    companion object {
        private val LISTENING = Regex("""^listening on http://127\.0\.0\.1:(\d+)\s*$""")

        fun randomPassword(): String {
            val alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
            val rng = SecureRandom()
            return (1..20).map { alphabet[rng.nextInt(alphabet.length)] }.joinToString("")
        }

        fun start(workDir: File, startTimeout: Duration = Duration.ofSeconds(60)): ServerProcess {
            val bin = System.getenv("RIVERCHIEF_SERVER_BIN")
                ?: error("RIVERCHIEF_SERVER_BIN is not set (run through bindings/kotlin/run-tests)")
            require(File(bin).canExecute()) { "RIVERCHIEF_SERVER_BIN=$bin is not an executable file" }
            val dataDir = File(workDir, "server-data").apply { mkdirs() }
            val logFile = File(workDir, "server.log")
            val password = randomPassword()
            val process = ProcessBuilder(
                bin, "serve", "--demo", "--demo-password", password,
                "--bind", "127.0.0.1:0", "--data-dir", dataDir.path,
            )
                .redirectError(logFile)
                .redirectInput(ProcessBuilder.Redirect.from(File("/dev/null")))
                .start()
            val port = CompletableFuture<Int>()
            val stdout = Collections.synchronizedList(ArrayList<String>())
            Thread({
                try {
                    process.inputStream.bufferedReader().useLines { lines ->
                        for (line in lines) {
                            stdout.add(line)
                            LISTENING.matchEntire(line)?.let { port.complete(it.groupValues[1].toInt()) }
                        }
                    }
                } catch (_: Exception) {
                    // The pipe closed with the process.
                }
                port.completeExceptionally(IllegalStateException("the server's stdout ended: $stdout"))
            }, "server-stdout").apply { isDaemon = true }.start()
            val bound = try {
                port.get(startTimeout.toMillis(), TimeUnit.MILLISECONDS)
            } catch (e: Exception) {
                process.destroyForcibly()
                throw IllegalStateException(
                    "the server did not say it was listening within $startTimeout: stdout $stdout, " +
                        "log ${logFile.takeIf { it.exists() }?.readText()?.takeLast(4000)}",
                    e,
                )
            }
            return ServerProcess(process, bound, password, logFile)
        }
    }
}

/**
 * A user talking to the server directly over HTTP (not through the proxy and not through the
 * core): how the test checks what the server really has.
 */
class ServerUser(private val baseUrl: String, username: String, password: String) {
    private val http: HttpClient = HttpClient.newBuilder()
        .version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(10))
        .build()
    private val token: String

    init {
        val body = Json.obj("username" to username, "password" to password, "device_name" to "kotlin-test checks")
        val answer = http.send(
            HttpRequest.newBuilder(URI.create("$baseUrl/api/v1/auth/login"))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build(),
            HttpResponse.BodyHandlers.ofString(),
        )
        check(answer.statusCode() == 200) { "login of $username: ${answer.statusCode()} ${answer.body()}" }
        token = Json.parse(answer.body()).str("token")!!
    }

    private fun request(path: String) = HttpRequest.newBuilder(URI.create(baseUrl + path))
        .timeout(Duration.ofSeconds(30))
        .header("Authorization", "Bearer $token")

    /** GET a JSON answer: its status and the parsed body (null unless 200). */
    fun getJson(path: String): Pair<Int, Any?> {
        val answer = http.send(request(path).GET().build(), HttpResponse.BodyHandlers.ofString())
        return answer.statusCode() to (if (answer.statusCode() == 200) Json.parse(answer.body()) else null)
    }

    /** GET a JSON answer that must be there. */
    fun json(path: String): Any? {
        val (status, body) = getJson(path)
        check(status == 200) { "GET $path: $status" }
        return body
    }

    /** GET the bytes (null on 404). */
    fun bytes(path: String): ByteArray? {
        val answer = http.send(request(path).GET().build(), HttpResponse.BodyHandlers.ofByteArray())
        return when (answer.statusCode()) {
            200 -> answer.body()
            404 -> null
            else -> error("GET $path: ${answer.statusCode()} ${String(answer.body()).take(300)}")
        }
    }

    /** HEAD: the status only. */
    fun head(path: String): Int = http.send(
        request(path).method("HEAD", HttpRequest.BodyPublishers.noBody()).build(),
        HttpResponse.BodyHandlers.discarding(),
    ).statusCode()
}
