# summarize-messages.awk: sum up the per-frame bus messages of the earlyexit element.
#
# Input files are the output of `gst-launch-1.0 -m ... earlyexit post-messages=true ...`, in which
# each frame gives one line like
#
#   Got message #12 from element "earlyexit0" (element): earlyexit, stage=(uint)1,
#     stages=(uint)3, class-id=(int)9, label=(string)"Ankle\ boot", confidence=(double)0.98,
#     score=(double)0.98, cost=(double)0.67, inference-ns=(guint64)412345, frame=(guint64)0,
#     pts=(guint64)0;
#
# (on one line; fields may come in any order). Every other line is ignored. Say what each file is
# with role=... before it on the command line:
#
#   awk -f summarize-messages.awk [role=labels LABELS.csv] role=full FULL.log role=early EARLY.log
#
#   role=labels  ground truth, a CSV with the header frame,label (label = class index)
#   role=full    a run with mode=full: the reference for agreement, and the baseline speed
#   role=early   a run with mode=early-exit
#
# Any of them may be left out; the summary shows what the given files allow. Frames are matched
# across files by the message's `frame` field (its index since the element started).
# Set -v title=... to print a heading. Works with mawk and gawk (POSIX awk only).

BEGIN { nruns = 0 }

FNR == 1 && role == "" {
    print "summarize-messages.awk: give role=labels|full|early before " FILENAME > "/dev/stderr"
    failed = 1; exit 2
}

# --- ground truth ------------------------------------------------------------------------------
role == "labels" {
    if (FNR == 1 && $0 ~ /^frame,label/) next
    split($0, col, ",")
    if (col[1] ~ /^[0-9]+$/) { truth[col[1] + 0] = col[2] + 0; nlabels++ }
    next
}

# --- one message -------------------------------------------------------------------------------
index($0, "(element): earlyexit,") {
    if (role != "early" && role != "full") {
        print "summarize-messages.awk: role must be labels, full or early, not '" role "'" > "/dev/stderr"
        failed = 1; exit 2
    }
    if (!(role in seen)) { seen[role] = 1; nruns++ }
    parse(substr($0, index($0, "(element): earlyexit,") + length("(element): earlyexit,")))
    if (!("stage" in f)) next
    r = role
    frame = ("frame" in f) ? f["frame"] + 0 : n[r]
    if ((r SUBSEP frame) in done) { dup[r]++; next }
    done[r, frame] = 1
    n[r]++
    stage = f["stage"] + 0
    exits[r, stage]++
    if (("stages" in f) && f["stages"] + 0 > stages[r]) stages[r] = f["stages"] + 0
    if (stage + 1 > stages[r]) stages[r] = stage + 1
    class[r, frame] = f["class-id"] + 0
    if ("cost" in f) { costsum[r] += f["cost"]; ncost[r]++ }
    if ("inference-ns" in f) { nssum[r] += f["inference-ns"]; nns[r]++ }
    next
}

# Parse the fields of a serialized GstStructure, `name=(type)value, ...;`, into f[name] = value.
# Values may be quoted strings with backslash escapes (`\ `, `\,`, `\"`, octal `\303`).
function parse(s,    i, len, c, j, name, val, quoted) {
    split("", f)
    len = length(s)
    i = 1
    while (i <= len) {
        while (i <= len && index(" ,;", substr(s, i, 1))) i++
        j = index(substr(s, i), "=")
        if (j == 0) break
        name = substr(s, i, j - 1)
        i += j
        if (substr(s, i, 1) == "(") i += index(substr(s, i), ")") # skip the type tag
        quoted = (substr(s, i, 1) == "\"")
        if (quoted) i++
        val = ""
        while (i <= len) {
            c = substr(s, i, 1)
            if (c == "\\") {
                if (substr(s, i + 1, 3) ~ /^[0-7][0-7][0-7]$/) {
                    val = val sprintf("%c", octal(substr(s, i + 1, 3)))
                    i += 4
                } else {
                    val = val substr(s, i + 1, 1)
                    i += 2
                }
                continue
            }
            if (quoted && c == "\"") { i++; break }
            if (!quoted && (c == "," || c == ";")) break
            val = val c
            i++
        }
        f[name] = val
    }
}

function octal(s) { return (substr(s, 1, 1) * 64) + (substr(s, 2, 1) * 8) + substr(s, 3, 1) }

function pct(a, b) { return b ? sprintf("%.1f%%", 100 * a / b) : "-" }

function ms(r) { return nns[r] ? nssum[r] / nns[r] / 1e6 : -1 }

END {
    if (failed) exit 2 # an exit in a rule still runs END
    # Compare after reading everything, so the files may come in any order.
    for (key in done) {
        split(key, kk, SUBSEP)
        r = kk[1]; frame = kk[2]
        if (frame in truth) { nlab[r]++; if (class[r, frame] == truth[frame]) right[r]++ }
        if (r != "full" && (("full" SUBSEP frame) in done)) {
            both[r]++
            if (class[r, frame] == class["full", frame]) same[r]++
        }
    }
    if (nruns == 0) {
        print "summarize-messages.awk: no earlyexit messages found (was post-messages=true set, and gst-launch-1.0 run with -m?)" > "/dev/stderr"
        exit 1
    }
    if (title != "") print "== " title
    for (k = 1; k <= 2; k++) {
        r = (k == 1) ? "early" : "full"
        if (!(r in seen)) continue
        printf "mode=%s\n", (r == "early" ? "early-exit" : r)
        printf "  frames:             %d\n", n[r]
        line = ""
        for (s = 0; s < stages[r]; s++)
            line = line sprintf("%s%d: %d (%s)", (s ? ", " : ""), s, exits[r, s] + 0, pct(exits[r, s], n[r]))
        printf "  exits per stage:    %s\n", line
        if (nlab[r])
            printf "  accuracy:           %.4f (%d of %d frames right, against the labels)\n", right[r] / nlab[r], right[r], nlab[r]
        if (nlabels && nlab[r] < n[r])
            printf "  warning:            %d frames have no label\n", n[r] - nlab[r]
        if (r != "full" && ("full" in seen)) {
            printf "  agreement:          %.4f (%d of %d frames give the class that mode=full gives)\n", both[r] ? same[r] / both[r] : 0, same[r], both[r]
            if (both[r] < n[r]) printf "  warning:            %d frames are missing from the full run\n", n[r] - both[r]
        }
        if (ncost[r]) printf "  mean cost:          %.4f (MACs used / backbone MACs)\n", costsum[r] / ncost[r]
        else printf "  mean cost:          unknown (the bundle gives no MACs)\n"
        if (nns[r]) printf "  inference:          %.3f ms/frame (preprocessing included)\n", ms(r)
        if (dup[r]) printf "  warning:            %d repeated frame indices ignored\n", dup[r]
    }
    if (("early" in seen) && ("full" in seen) && ms("early") > 0 && ms("full") > 0)
        printf "speed-up: %.2fx (full %.3f ms/frame, early-exit %.3f ms/frame)\n", ms("full") / ms("early"), ms("full"), ms("early")
}
