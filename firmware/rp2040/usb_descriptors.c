/* USB descriptors: a CDC-ACM device (the host opens it as /dev/ttyACM0). The
 * VID:PID are Raspberry Pi's development pair; a product needs its own PID. */
#include <string.h>

#include "pico/unique_id.h"
#include "tusb.h"

#define USB_VID 0x2E8A
#define USB_PID 0x000A
#define EPNUM_CDC_NOTIF 0x81
#define EPNUM_CDC_OUT 0x02
#define EPNUM_CDC_IN 0x82
#define CONFIG_TOTAL_LEN (TUD_CONFIG_DESC_LEN + TUD_CDC_DESC_LEN)

enum { ITF_NUM_CDC = 0, ITF_NUM_CDC_DATA, ITF_NUM_TOTAL };
enum { STR_LANG = 0, STR_MANUFACTURER, STR_PRODUCT, STR_SERIAL, STR_CDC };

static const tusb_desc_device_t device = {
    .bLength = sizeof(tusb_desc_device_t),
    .bDescriptorType = TUSB_DESC_DEVICE,
    .bcdUSB = 0x0200,
    .bDeviceClass = TUSB_CLASS_MISC,
    .bDeviceSubClass = MISC_SUBCLASS_COMMON,
    .bDeviceProtocol = MISC_PROTOCOL_IAD,
    .bMaxPacketSize0 = CFG_TUD_ENDPOINT0_SIZE,
    .idVendor = USB_VID,
    .idProduct = USB_PID,
    .bcdDevice = 0x0100,
    .iManufacturer = STR_MANUFACTURER,
    .iProduct = STR_PRODUCT,
    .iSerialNumber = STR_SERIAL,
    .bNumConfigurations = 1,
};

static const uint8_t configuration[] = {
    TUD_CONFIG_DESCRIPTOR(1, ITF_NUM_TOTAL, 0, CONFIG_TOTAL_LEN, 0x00, 100),
    TUD_CDC_DESCRIPTOR(ITF_NUM_CDC, STR_CDC, EPNUM_CDC_NOTIF, 8, EPNUM_CDC_OUT, EPNUM_CDC_IN, 64),
};

const uint8_t *tud_descriptor_device_cb(void)
{
    return (const uint8_t *)&device;
}

const uint8_t *tud_descriptor_configuration_cb(uint8_t index)
{
    (void)index;
    return configuration;
}

const uint16_t *tud_descriptor_string_cb(uint8_t index, uint16_t langid)
{
    static uint16_t desc[33];
    static char serial[2 * PICO_UNIQUE_BOARD_ID_SIZE_BYTES + 1];
    const char *text;
    size_t n, i;

    (void)langid;
    switch (index) {
    case STR_LANG:
        desc[1] = 0x0409;
        desc[0] = (uint16_t)(TUSB_DESC_STRING << 8 | 4);
        return desc;
    case STR_MANUFACTURER:
        text = "acrnema-bridge";
        break;
    case STR_PRODUCT:
        text = "ACR-NEMA interface box";
        break;
    case STR_SERIAL:
        pico_get_unique_board_id_string(serial, sizeof serial);
        text = serial;
        break;
    case STR_CDC:
        text = "box protocol";
        break;
    default:
        return NULL;
    }
    n = strlen(text);
    if (n > 32)
        n = 32;
    for (i = 0; i < n; i++)
        desc[1 + i] = (uint8_t)text[i];
    desc[0] = (uint16_t)(TUSB_DESC_STRING << 8 | (2 * n + 2));
    return desc;
}
