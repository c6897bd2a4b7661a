# vmm/bin2c.cmake — turns the flat guest image into a C array (cmake -P):
#   cmake -DIN=guest.bin -DOUT=guest_blob.c -P bin2c.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
math(EXPR size "${n} / 2")
file(WRITE ${OUT} "/* generated from vmm/guest.S by vmm/bin2c.cmake: do not edit */\n"
  "#include <stdint.h>\n"
  "const uint8_t gmvm_guest_start[] = {${bytes}};\n"
  "const uint8_t *const gmvm_guest_end_ptr = gmvm_guest_start + ${size};\n")
