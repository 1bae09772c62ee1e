package org.riverchief.ffi

/**
 * Just enough JSON for the test to read the server's answers and write its login body: objects
 * become maps (insertion order kept), arrays lists, numbers Long or Double, and null null.
 */
object Json {
    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipSpace()
        val value = p.value()
        p.skipSpace()
        require(p.atEnd()) { "trailing characters at ${p.pos}" }
        return value
    }

    fun quote(s: String): String = buildString {
        append('"')
        for (c in s) {
            when {
                c == '"' -> append("\\\"")
                c == '\\' -> append("\\\\")
                c < ' ' -> append("\\u%04x".format(c.code))
                else -> append(c)
            }
        }
        append('"')
    }

    /** An object of string fields, as the login body needs. */
    fun obj(vararg fields: Pair<String, String>): String =
        fields.joinToString(",", "{", "}") { (k, v) -> quote(k) + ":" + quote(v) }

    private class Parser(val s: String) {
        var pos = 0

        fun atEnd() = pos >= s.length

        fun skipSpace() {
            while (pos < s.length && s[pos] in " \t\r\n") pos++
        }

        fun value(): Any? {
            require(pos < s.length) { "unexpected end of JSON" }
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> word("true", true)
                'f' -> word("false", false)
                'n' -> word("null", null)
                else -> if (c == '-' || c.isDigit()) num() else error("unexpected '$c' at $pos")
            }
        }

        private fun word(w: String, v: Any?): Any? {
            require(s.startsWith(w, pos)) { "bad literal at $pos" }
            pos += w.length
            return v
        }

        private fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipSpace()
            if (s[pos] == '}') { pos++; return out }
            while (true) {
                skipSpace()
                val key = str()
                skipSpace()
                require(s[pos] == ':') { "expected ':' at $pos" }
                pos++
                skipSpace()
                out[key] = value()
                skipSpace()
                when (s[pos++]) {
                    ',' -> continue
                    '}' -> return out
                    else -> error("expected ',' or '}' at ${pos - 1}")
                }
            }
        }

        private fun arr(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipSpace()
            if (s[pos] == ']') { pos++; return out }
            while (true) {
                skipSpace()
                out.add(value())
                skipSpace()
                when (s[pos++]) {
                    ',' -> continue
                    ']' -> return out
                    else -> error("expected ',' or ']' at ${pos - 1}")
                }
            }
        }

        private fun str(): String {
            require(s[pos] == '"') { "expected a string at $pos" }
            pos++
            val sb = StringBuilder()
            while (true) {
                val c = s[pos++]
                when (c) {
                    '"' -> return sb.toString()
                    '\\' -> when (val e = s[pos++]) {
                        '"', '\\', '/' -> sb.append(e)
                        'b' -> sb.append('\b')
                        'f' -> sb.append('\u000c')
                        'n' -> sb.append('\n')
                        'r' -> sb.append('\r')
                        't' -> sb.append('\t')
                        'u' -> { sb.append(s.substring(pos, pos + 4).toInt(16).toChar()); pos += 4 }
                        else -> error("bad escape \\$e at ${pos - 1}")
                    }
                    else -> sb.append(c)
                }
            }
        }

        private fun num(): Any {
            val start = pos
            if (s[pos] == '-') pos++
            while (pos < s.length && (s[pos].isDigit() || s[pos] in ".eE+-")) pos++
            val t = s.substring(start, pos)
            return if (t.any { it in ".eE" }) t.toDouble() else t.toLongOrNull() ?: t.toDouble()
        }
    }
}

/** Reading parsed JSON without a cast on every line. */
@Suppress("UNCHECKED_CAST")
fun Any?.field(name: String): Any? = (this as? Map<String, Any?>
    ?: error("not an object: ${this.toString().take(200)}"))[name]

fun Any?.obj(name: String): Map<String, Any?> =
    @Suppress("UNCHECKED_CAST") (field(name) as? Map<String, Any?> ?: error("$name is not an object"))

fun Any?.list(name: String): List<Any?> = field(name) as? List<Any?> ?: error("$name is not a list")

fun Any?.str(name: String): String? = field(name) as String?

fun Any?.long(name: String): Long = (field(name) as? Number ?: error("$name is not a number")).toLong()

fun Any?.bool(name: String): Boolean = field(name) as? Boolean ?: error("$name is not a boolean")
