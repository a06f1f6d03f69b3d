# Writes OUT, a C file holding the schema migrations (FILES: the
# sql/migrations/NNN_name.sql files), so the engine applies them with no
# file to find at run time (records/migrations.h). Run by the build:
#   cmake -DOUT=... -DFILES="a.sql|b.sql" -P embed_migrations.cmake
string(REPLACE "|" ";" FILES "${FILES}")
list(SORT FILES)
set(body "")
set(count 0)
set(last 0)
foreach(f IN LISTS FILES)
  get_filename_component(name "${f}" NAME_WE)
  if(NOT name MATCHES "^([0-9]+)_[a-z0-9_]+$")
    message(FATAL_ERROR "${f}: a migration is named NNN_words.sql (digits, then a-z 0-9 _)")
  endif()
  math(EXPR version "${CMAKE_MATCH_1}")
  math(EXPR expect "${last} + 1")
  if(NOT version EQUAL expect)
    message(FATAL_ERROR "${f}: migration ${version} follows ${last}: numbers go up by one")
  endif()
  set(last ${version})
  file(READ "${f}" sql)
  string(REPLACE "\\" "\\\\" sql "${sql}")
  string(REPLACE "\"" "\\\"" sql "${sql}")
  string(REPLACE "\n" "\\n\"\n    \"" sql "${sql}")
  string(APPEND body "    {${version}, \"${name}\",\n    \"${sql}\"},\n")
  math(EXPR count "${count} + 1")
endforeach()
file(WRITE "${OUT}.tmp"
  "/* Generated from sql/migrations/ by engine/records/embed_migrations.cmake: do not edit. */\n"
  "#include \"records/migrations.h\"\n\n"
  "const struct rd_migration rd_migrations[] = {\n${body}};\n"
  "const unsigned rd_n_migrations = ${count};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
