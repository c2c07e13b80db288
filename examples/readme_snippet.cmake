# Script mode: README.md's "Using the library" code block must equal the region of
# examples/embed_file.cpp between the markers "// [readme-snippet]" and
# "// [readme-snippet-end]" (the README block is marked <!-- snippet: examples/embed_file.cpp -->).
file(READ ${EXAMPLE} example)
string(FIND "${example}" "// [readme-snippet]\n" begin)
string(FIND "${example}" "// [readme-snippet-end]" end)
if(begin EQUAL -1 OR end EQUAL -1)
  message(FATAL_ERROR "${EXAMPLE}: the // [readme-snippet] ... // [readme-snippet-end] markers are missing")
endif()
math(EXPR begin "${begin} + 20")
math(EXPR len "${end} - ${begin}")
string(SUBSTRING "${example}" ${begin} ${len} want)

file(READ ${README} readme)
set(marker "<!-- snippet: examples/embed_file.cpp -->\n```cpp\n")
string(FIND "${readme}" "${marker}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${README}: no '<!-- snippet: examples/embed_file.cpp -->' followed by a ```cpp block")
endif()
string(LENGTH "${marker}" mlen)
math(EXPR at "${at} + ${mlen}")
string(SUBSTRING "${readme}" ${at} -1 rest)
string(FIND "${rest}" "```" close)
string(SUBSTRING "${rest}" 0 ${close} got)
if(NOT got STREQUAL want)
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/readme_snippet.want "${want}")
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/readme_snippet.got "${got}")
  message(FATAL_ERROR "README.md's snippet differs from ${EXAMPLE}'s marked region: diff "
                      "${CMAKE_CURRENT_BINARY_DIR}/readme_snippet.want readme_snippet.got; "
                      "copy the region into README.md")
endif()
message(STATUS "README snippet equals ${EXAMPLE}'s marked region")
